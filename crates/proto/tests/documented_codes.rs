//! Every client-visible code is listed in docs/protocol.md with its exact text, and the table
//! lists no code the server does not have.

use tidings_proto::Code;

#[test]
fn the_protocol_doc_lists_every_code_with_its_text() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).unwrap();
    for code in Code::ALL {
        let row = format!("| {} | {} |", code.as_u32(), code.text());
        assert!(doc.contains(&row), "docs/protocol.md lacks the row {row:?}");
    }
    let section = doc
        .split("## Errors")
        .nth(1)
        .unwrap()
        .split("## HTTP API")
        .next()
        .unwrap();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let first = line.trim_start_matches("| ").split(' ').next().unwrap();
        if let Ok(n) = first.parse::<u32>() {
            assert!(
                Code::from_u32(n).is_some(),
                "docs/protocol.md lists unknown code {n}"
            );
        }
    }
}
