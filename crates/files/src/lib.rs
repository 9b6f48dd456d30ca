//! Uploaded files: images, voice and other files that messages link to.
//!
//! A file is stored as two objects, `{id}` (the bytes) and `{id}.json` (its [`Meta`]), plus
//! `{id}.thumb.jpg` for an image, in the data directory (`files/` under it) or in an
//! S3-compatible bucket: any backend of the `object_store` crate. Ids are 128 random bits.
//!
//! Downloads are authorised by the link itself: `/v1/files/{id}?exp=E&sig=S`, where `S` is an
//! HMAC-SHA256 (keyed with a secret of the server's) of the id and `E`, the link's expiry in
//! seconds since the Unix epoch. A link cannot be guessed, and it stops working at its expiry.
//! Every link expires: none is made to live longer than the maximum lifetime (default 7 days),
//! and one that would live longer than that from now (a link that never expires, `exp=0`, made
//! before links had to expire, or one made while the maximum was longer) is refused, so
//! lowering the maximum shortens the links already given out.
//!
//! What may be uploaded: at most `max_bytes` (default 20 MiB) of one of the types [`kind_of`]
//! accepts. An image must be what its type says (its bytes are decoded) and gets a JPEG
//! thumbnail of at most 256 × 256 pixels.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The largest upload by default.
pub const DEFAULT_MAX_BYTES: usize = 20 << 20;
/// The longest a link lives by default, in seconds: 7 days.
pub const DEFAULT_MAX_LINK_SECS: u64 = 7 * 24 * 3600;
/// How far past the maximum lifetime a link's expiry may lie and still be honoured: the clocks
/// of a cluster's nodes differ a little, and a link made at the maximum on a node whose clock
/// runs ahead must still work on the others.
pub const CLOCK_SLACK_SECS: u64 = 300;
/// The longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 256;
/// Images with a side longer than this are refused rather than decoded.
const MAX_IMAGE_SIDE: u32 = 16_384;
/// Memory an image's decoding may take at most.
const MAX_DECODE_BYTES: u64 = 512 << 20;

/// What a file is for, by its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Image,
    Voice,
    File,
}

/// The kind a content type is uploaded as, or `None` if it is not accepted. Types a browser
/// would run or render as a page (HTML, SVG, JavaScript, …) are not accepted: a download link
/// must never become a page of this server's origin.
pub fn kind_of(content_type: &str) -> Option<Kind> {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match t.as_str() {
        "image/jpeg" | "image/png" | "image/gif" | "image/webp" => Some(Kind::Image),
        "audio/aac" | "audio/mp4" | "audio/mpeg" | "audio/ogg" | "audio/webm" | "audio/wav"
        | "audio/amr" => Some(Kind::Voice),
        "application/pdf"
        | "application/zip"
        | "application/json"
        | "application/octet-stream"
        | "text/plain"
        | "text/csv"
        | "video/mp4"
        | "video/webm"
        | "application/msword"
        | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        | "application/vnd.openxmlformats-officedocument.presentationml.presentation" => {
            Some(Kind::File)
        }
        _ => None,
    }
}

/// What is kept about a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub id: String,
    pub kind: Kind,
    pub content_type: String,
    pub name: String,
    pub size: u64,
    /// The user who uploaded it.
    pub owner: String,
    /// Upload time, ms since the Unix epoch.
    pub created: i64,
    /// Images: their size in pixels, and whether a thumbnail was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default)]
    pub thumbnail: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("files of type {0:?} are not accepted")]
    TypeNotAllowed(String),
    #[error("the file is empty")]
    Empty,
    #[error("not a valid image of its type: {0}")]
    BadImage(String),
    #[error("file storage failed: {0}")]
    Storage(String),
}

impl From<object_store::Error> for FileError {
    fn from(e: object_store::Error) -> FileError {
        FileError::Storage(e.to_string())
    }
}

/// Where files are kept, and the key their links are signed with.
#[derive(Clone)]
pub struct Files {
    store: Arc<dyn ObjectStore>,
    key: Arc<[u8]>,
    max_bytes: usize,
    max_link_secs: u64,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("store", &self.store.to_string())
            .field("max_bytes", &self.max_bytes)
            .field("max_link_secs", &self.max_link_secs)
            .finish_non_exhaustive()
    }
}

/// A file's bytes as stored.
pub struct Download {
    pub meta: Meta,
    pub bytes: Bytes,
}

impl Files {
    /// Files under `dir` (made if missing).
    pub fn local(dir: &Path, key: &[u8], max_bytes: usize) -> Result<Files, FileError> {
        std::fs::create_dir_all(dir).map_err(|e| FileError::Storage(e.to_string()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Files::with_store(Arc::new(store), key, max_bytes))
    }

    /// Files in an S3-compatible bucket. Credentials, region and endpoint come from the standard
    /// `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT` for a service other than Amazon's, `AWS_ALLOW_HTTP=true` for
    /// a plain-HTTP one).
    pub fn s3(bucket: &str, key: &[u8], max_bytes: usize) -> Result<Files, FileError> {
        Files::s3_with(
            object_store::aws::AmazonS3Builder::from_env(),
            bucket,
            key,
            max_bytes,
        )
    }

    /// Files in an S3-compatible bucket, with the connection settings given.
    pub fn s3_with(
        builder: object_store::aws::AmazonS3Builder,
        bucket: &str,
        key: &[u8],
        max_bytes: usize,
    ) -> Result<Files, FileError> {
        let store = builder.with_bucket_name(bucket).build()?;
        Ok(Files::with_store(Arc::new(store), key, max_bytes))
    }

    pub fn with_store(store: Arc<dyn ObjectStore>, key: &[u8], max_bytes: usize) -> Files {
        Files {
            store,
            key: key.into(),
            max_bytes,
            max_link_secs: DEFAULT_MAX_LINK_SECS,
        }
    }

    /// The same store, with links that live at most `secs` seconds (at least 1).
    pub fn with_max_link_secs(mut self, secs: u64) -> Files {
        self.max_link_secs = secs.max(1);
        self
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The longest a link lives, in seconds.
    pub fn max_link_secs(&self) -> u64 {
        self.max_link_secs
    }

    /// The expiry of a link made at `now` (seconds since the Unix epoch) to live `ttl` seconds,
    /// or the maximum lifetime if `ttl` is longer.
    pub fn expiry(&self, now: u64, ttl: u64) -> u64 {
        now.saturating_add(ttl.min(self.max_link_secs))
    }

    /// Stores an upload: checks its size and type, decodes an image and makes its thumbnail.
    pub async fn put(
        &self,
        owner: &str,
        name: &str,
        content_type: &str,
        body: Bytes,
        now_ms: i64,
    ) -> Result<Meta, FileError> {
        if body.len() > self.max_bytes {
            return Err(FileError::TooLarge {
                max: self.max_bytes,
            });
        }
        if body.is_empty() {
            return Err(FileError::Empty);
        }
        let Some(kind) = kind_of(content_type) else {
            return Err(FileError::TypeNotAllowed(content_type.to_string()));
        };
        let content_type = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let id = hex::encode(rand::random::<[u8; 16]>());
        let mut meta = Meta {
            id: id.clone(),
            kind,
            content_type: content_type.clone(),
            name: clean_name(name),
            size: body.len() as u64,
            owner: owner.to_string(),
            created: now_ms,
            width: None,
            height: None,
            thumbnail: false,
        };
        if kind == Kind::Image {
            let image = body.clone();
            let (width, height, thumb) =
                tokio::task::spawn_blocking(move || thumbnail(&image, &content_type))
                    .await
                    .map_err(|e| FileError::Storage(e.to_string()))??;
            meta.width = Some(width);
            meta.height = Some(height);
            meta.thumbnail = true;
            self.store
                .put(&thumb_path(&id), PutPayload::from(thumb))
                .await?;
        }
        self.store
            .put(&ObjectPath::from(id.as_str()), PutPayload::from(body))
            .await?;
        // The metadata goes last: a file is there once its metadata is.
        let json = serde_json::to_vec(&meta).map_err(|e| FileError::Storage(e.to_string()))?;
        self.store
            .put(&meta_path(&id), PutPayload::from(json))
            .await?;
        Ok(meta)
    }

    /// A stored file's metadata, if it exists.
    pub async fn meta(&self, id: &str) -> Result<Option<Meta>, FileError> {
        if !is_id(id) {
            return Ok(None);
        }
        let Some(bytes) = self.read(&meta_path(id)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| FileError::Storage(format!("bad metadata of {id}: {e}")))
    }

    /// A stored file, or its thumbnail.
    pub async fn get(&self, id: &str, thumbnail: bool) -> Result<Option<Download>, FileError> {
        let Some(meta) = self.meta(id).await? else {
            return Ok(None);
        };
        if thumbnail && !meta.thumbnail {
            return Ok(None);
        }
        let path = if thumbnail {
            thumb_path(id)
        } else {
            ObjectPath::from(id)
        };
        Ok(self
            .read(&path)
            .await?
            .map(|bytes| Download { meta, bytes }))
    }

    async fn read(&self, path: &ObjectPath) -> Result<Option<Bytes>, FileError> {
        match self.store.get(path).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The query string that authorises downloads of `id` until `expires` (seconds since the
    /// Unix epoch, from [`Files::expiry`]): `exp=…&sig=…`.
    pub fn grant(&self, id: &str, expires: u64) -> String {
        format!("exp={expires}&sig={}", self.signature(id, expires))
    }

    /// Whether `sig` authorises downloads of `id` until `expires`, at `now` (seconds): the
    /// signature is this server's, the link has not expired, and it does not live longer from
    /// now than the maximum lifetime allows (`exp=0`, which once meant "never", is such a link).
    pub fn allows(&self, id: &str, expires: u64, sig: &str, now: u64) -> bool {
        let latest = now
            .saturating_add(self.max_link_secs)
            .saturating_add(CLOCK_SLACK_SECS);
        if expires < now || expires > latest {
            return false;
        }
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        self.mac(id, expires).verify_slice(&sig).is_ok()
    }

    fn signature(&self, id: &str, expires: u64) -> String {
        hex::encode(self.mac(id, expires).finalize().into_bytes())
    }

    fn mac(&self, id: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(b"tidings-file\0");
        mac.update(id.as_bytes());
        mac.update(b"\0");
        mac.update(expires.to_string().as_bytes());
        mac
    }
}

fn meta_path(id: &str) -> ObjectPath {
    ObjectPath::from(format!("{id}.json"))
}

fn thumb_path(id: &str) -> ObjectPath {
    ObjectPath::from(format!("{id}.thumb.jpg"))
}

/// Whether `id` can be a file id (32 lowercase hex digits): anything else is not looked up.
pub fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A file name fit to show and to send back in a header: the last path component, without
/// control characters or quotes, at most 200 characters; "file" if nothing is left.
fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(200)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "file".into()
    } else {
        cleaned.to_string()
    }
}

/// Decodes an image of the given type; returns its size and a JPEG thumbnail.
fn thumbnail(bytes: &[u8], content_type: &str) -> Result<(u32, u32, Vec<u8>), FileError> {
    let format = match content_type {
        "image/jpeg" => image::ImageFormat::Jpeg,
        "image/png" => image::ImageFormat::Png,
        "image/gif" => image::ImageFormat::Gif,
        _ => image::ImageFormat::WebP,
    };
    let bad = |e: image::ImageError| FileError::BadImage(e.to_string());
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(bad)?;
    let (width, height) = (image.width(), image.height());
    let thumb = image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).into_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&thumb)
        .map_err(bad)?;
    Ok((width, height, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("encode");
        out.into_inner()
    }

    fn files(dir: &Path) -> Files {
        Files::local(dir, b"secret", 1 << 20).expect("a store")
    }

    #[tokio::test]
    async fn an_image_is_stored_with_a_thumbnail_that_fits_the_box() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let meta = stores_an_image_and_its_thumbnail(&f).await;
        // Reopened, the store still has it.
        let again = files(dir.path());
        assert_eq!(again.meta(&meta.id).await.unwrap(), Some(meta));
    }

    /// S3-compatible storage, when `TIDINGS_TEST_S3_ENDPOINT` names a service with a bucket
    /// `tidings-test` (`.ci/run` starts one).
    #[tokio::test]
    async fn files_go_to_s3_compatible_storage() {
        let Ok(endpoint) = std::env::var("TIDINGS_TEST_S3_ENDPOINT") else {
            // Straight to the terminal: the test harness captures eprintln! of passing tests.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: set TIDINGS_TEST_S3_ENDPOINT to test S3-compatible storage"
            );
            return;
        };
        let builder = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test");
        let f = Files::s3_with(builder, "tidings-test", b"secret", 1 << 20).expect("a store");
        let meta = stores_an_image_and_its_thumbnail(&f).await;
        assert_eq!(f.meta(&meta.id).await.unwrap(), Some(meta));
        assert!(f.meta(&"0".repeat(32)).await.unwrap().is_none());
    }

    async fn stores_an_image_and_its_thumbnail(f: &Files) -> Meta {
        let meta = f
            .put(
                "alice",
                "../../cat.png",
                "image/png",
                png(800, 400).into(),
                1,
            )
            .await
            .expect("stored");
        assert_eq!(
            (meta.kind, meta.width, meta.height, meta.thumbnail),
            (Kind::Image, Some(800), Some(400), true)
        );
        assert_eq!(meta.name, "cat.png");
        assert!(is_id(&meta.id));
        let thumb = f.get(&meta.id, true).await.unwrap().expect("a thumbnail");
        let decoded = image::load_from_memory_with_format(&thumb.bytes, image::ImageFormat::Jpeg)
            .expect("a JPEG");
        assert_eq!((decoded.width(), decoded.height()), (256, 128));
        let whole = f.get(&meta.id, false).await.unwrap().expect("the file");
        assert_eq!(whole.bytes.as_ref(), png(800, 400).as_slice());
        meta
    }

    #[tokio::test]
    async fn uploads_outside_the_limits_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let refused = |r: Result<Meta, FileError>| r.expect_err("refused");
        assert!(matches!(
            refused(f.put("a", "x", "text/plain", vec![0; (1 << 20) + 1].into(), 1).await),
            FileError::TooLarge { max } if max == 1 << 20
        ));
        assert!(matches!(
            refused(
                f.put("a", "x.html", "text/html", b"<script>".to_vec().into(), 1)
                    .await
            ),
            FileError::TypeNotAllowed(_)
        ));
        assert!(matches!(
            refused(
                f.put("a", "x.svg", "image/svg+xml", b"<svg/>".to_vec().into(), 1)
                    .await
            ),
            FileError::TypeNotAllowed(_)
        ));
        assert!(matches!(
            refused(f.put("a", "x", "text/plain", Bytes::new(), 1).await),
            FileError::Empty
        ));
        // A "PNG" that is not one, and a PNG declared as a JPEG.
        assert!(matches!(
            refused(
                f.put("a", "x.png", "image/png", b"not a png".to_vec().into(), 1)
                    .await
            ),
            FileError::BadImage(_)
        ));
        assert!(matches!(
            refused(f.put("a", "x.jpg", "image/jpeg", png(4, 4).into(), 1).await),
            FileError::BadImage(_)
        ));
        // Nothing of the refused uploads was kept.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn links_are_signed_per_file_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path());
        let id = "0123456789abcdef0123456789abcdef";
        let grant = f.grant(id, 100);
        let sig = grant.split("sig=").nth(1).unwrap();
        assert!(f.allows(id, 100, sig, 99));
        assert!(f.allows(id, 100, sig, 100));
        assert!(!f.allows(id, 100, sig, 101), "expired");
        assert!(!f.allows(id, 101, sig, 50), "another expiry");
        assert!(
            !f.allows("1123456789abcdef0123456789abcdef", 100, sig, 50),
            "another file"
        );
        assert!(!f.allows(id, 100, "zz", 50));
        // Another server's key signs differently.
        let other = Files::local(dir.path(), b"other", 1).unwrap();
        assert!(!other.allows(id, 100, sig, 50));
    }

    #[test]
    fn no_link_outlives_the_maximum_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path()).with_max_link_secs(600);
        let id = "0123456789abcdef0123456789abcdef";
        let now = 1_000_000;
        assert_eq!(f.expiry(now, 60), now + 60);
        assert_eq!(f.expiry(now, 3600), now + 600, "clamped to the maximum");
        assert_eq!(f.expiry(u64::MAX - 1, 3600), u64::MAX);
        let sig = |expires: u64| {
            f.grant(id, expires)
                .split("sig=")
                .nth(1)
                .unwrap()
                .to_string()
        };
        assert!(f.allows(id, now + 600, &sig(now + 600), now));
        // A link that never expires, properly signed, is refused.
        assert!(!f.allows(id, 0, &sig(0), now));
        // So is one made to live longer than the maximum (made before it was lowered), beyond
        // the clocks' slack.
        let long = now + 600 + CLOCK_SLACK_SECS;
        assert!(f.allows(id, long, &sig(long), now));
        assert!(!f.allows(id, long + 1, &sig(long + 1), now));
        // Once the time left is within the maximum, it works again until it expires.
        assert!(f.allows(id, long + 1, &sig(long + 1), now + 1));
    }
}
