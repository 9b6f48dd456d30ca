//! End-to-end encryption (docs/e2ee.md): the MLS key package directory, with key packages that
//! openmls makes for each device.

use tidings_client::{Client, ClientError};
use tidings_mls::device::Device;
use tidings_proto::Code;

use crate::util::*;

fn refused_with(result: Result<impl std::fmt::Debug, ClientError>, code: Code) -> String {
    match result {
        Err(ClientError::Refused { code: got, message }) if got == code.as_u32() => message,
        other => panic!("expected code {}, got {other:?}", code.as_u32()),
    }
}

async fn publish(client: &Client, device: &Device, n: usize) -> u64 {
    let mut packages: Vec<Vec<u8>> = (0..n).map(|_| device.key_package(false).unwrap()).collect();
    packages.push(device.key_package(true).unwrap());
    client.publish_key_packages(packages, false).await.unwrap()
}

#[tokio::test]
async fn key_packages_are_checked_and_each_is_handed_out_once_but_the_last_resort() {
    let server = TestServer::start().await;
    let (alice_phone, _e1) = server.client("alice", "phone").await;
    let (alice_laptop, _e2) = server.client("alice", "laptop").await;
    let (bob, _e3) = server.client("bob", "desk").await;
    let phone = Device::create("alice", "phone").unwrap();
    let laptop = Device::create("alice", "laptop").unwrap();

    assert_eq!(publish(&alice_phone, &phone, 3).await, 3);
    assert_eq!(publish(&alice_laptop, &laptop, 1).await, 1);
    // An empty upload asks how many are left.
    assert_eq!(
        alice_phone
            .publish_key_packages(vec![], false)
            .await
            .unwrap(),
        3
    );

    let mut handed = std::collections::BTreeSet::new();
    for round in 0..6 {
        let claimed = bob.claim_key_packages(&["alice"]).await.unwrap();
        let devices: Vec<_> = claimed.iter().map(|k| k.device_id.as_str()).collect();
        assert_eq!(devices, ["laptop", "phone"], "round {round}");
        for k in &claimed {
            assert_eq!(k.user_id, "alice");
            let info = tidings_mls::ds::check_key_package(
                &k.key_package,
                "alice",
                &k.device_id,
                tidings_mls::ds::now_secs(),
            )
            .expect("a claimed key package is the device's own");
            assert_eq!(info.last_resort, k.last_resort);
            if !k.last_resort {
                assert!(
                    handed.insert(info.reference),
                    "a key package was handed out twice"
                );
            }
        }
        let expect_last_resort = [round >= 1, round >= 3];
        assert_eq!(
            claimed.iter().map(|k| k.last_resort).collect::<Vec<_>>(),
            expect_last_resort,
            "round {round}"
        );
    }
    assert_eq!(handed.len(), 4);
    assert_eq!(
        alice_phone
            .publish_key_packages(vec![], false)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_key_package_must_name_the_uploading_user_and_device() {
    let server = TestServer::start().await;
    let (alice, _e) = server.client("alice", "phone").await;
    let other_device = Device::create("alice", "laptop").unwrap();
    let other_user = Device::create("mallory", "phone").unwrap();
    let own = Device::create("alice", "phone").unwrap();

    let text = refused_with(
        alice
            .publish_key_packages(vec![other_device.key_package(false).unwrap()], false)
            .await,
        Code::InvalidKeyPackage,
    );
    assert!(text.contains("alice:laptop"), "{text}");
    let text = refused_with(
        alice
            .publish_key_packages(
                vec![
                    own.key_package(false).unwrap(),
                    other_user.key_package(false).unwrap(),
                ],
                false,
            )
            .await,
        Code::InvalidKeyPackage,
    );
    assert!(
        text.contains("key package 1") && text.contains("mallory:phone"),
        "{text}"
    );
    let mut tampered = own.key_package(false).unwrap();
    let at = tampered.len() - 5;
    tampered[at] ^= 0x40;
    refused_with(
        alice.publish_key_packages(vec![tampered], false).await,
        Code::InvalidKeyPackage,
    );
    refused_with(
        alice
            .publish_key_packages(vec![b"not mls".to_vec()], false)
            .await,
        Code::InvalidKeyPackage,
    );
    // Nothing of a refused upload was stored.
    assert_eq!(alice.publish_key_packages(vec![], false).await.unwrap(), 0);
    let (bob, _e) = server.client("bob", "desk").await;
    assert!(bob.claim_key_packages(&["alice"]).await.unwrap().is_empty());
    // A connection without a device id has no key packages.
    let (anonymous, _e) = server.client("carol", "").await;
    let carol = Device::create("carol", "x").unwrap();
    let text = refused_with(
        anonymous
            .publish_key_packages(vec![carol.key_package(false).unwrap()], false)
            .await,
        Code::InvalidKeyPackage,
    );
    assert!(text.contains("device id"), "{text}");
}

#[tokio::test]
async fn claims_are_limited_and_skip_users_who_block_the_claimer() {
    let server = TestServer::start().await;
    let (alice, _e) = server.client("alice", "phone").await;
    let (bob, _e2) = server.client("bob", "desk").await;
    publish(&alice, &Device::create("alice", "phone").unwrap(), 2).await;
    alice.block("bob").await.unwrap();
    assert!(bob.claim_key_packages(&["alice"]).await.unwrap().is_empty());
    alice.unblock("bob").await.unwrap();
    assert_eq!(bob.claim_key_packages(&["alice"]).await.unwrap().len(), 1);
    refused_with(bob.claim_key_packages(&[]).await, Code::InvalidQuery);
    let eleven: Vec<String> = (0..11).map(|i| format!("u{i}")).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    refused_with(bob.claim_key_packages(&eleven).await, Code::InvalidQuery);
    refused_with(
        bob.claim_key_packages(&["no:colon"]).await,
        Code::InvalidTarget,
    );
}
