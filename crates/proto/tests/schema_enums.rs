//! The decoder refuses enum fields holding numbers the schema does not define, field by field
//! (`codec::check_enums`). This test lists the schema's enum fields, so that a new one fails
//! here until the decoder checks it too.

/// `Message.field` for every field of the schema whose type is one of its enums.
fn enum_fields(schema: &str) -> Vec<String> {
    let enums: Vec<&str> = schema
        .lines()
        .filter_map(|l| l.trim().strip_prefix("enum "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let mut messages: Vec<&str> = Vec::new();
    let mut found = Vec::new();
    for line in schema.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("message ") {
            messages.push(rest.split_whitespace().next().unwrap_or(""));
        } else if line.starts_with("enum ") || line.starts_with("oneof ") {
            messages.push("");
        } else if line.starts_with('}') {
            messages.pop();
        } else {
            let mut words = line.split_whitespace();
            let mut ty = words.next().unwrap_or("");
            if ty == "repeated" || ty == "optional" {
                ty = words.next().unwrap_or("");
            }
            if enums.contains(&ty)
                && let Some(name) = words.next()
            {
                let message = messages.iter().rev().find(|m| !m.is_empty()).unwrap();
                found.push(format!("{message}.{name}"));
            }
        }
    }
    found
}

#[test]
fn the_decoder_checks_every_enum_field_of_the_schema() {
    let schema = include_str!("../proto/tidings.proto");
    assert_eq!(
        enum_fields(schema),
        ["Send.priority"],
        "an enum field was added or moved: make codec::check_enums refuse its unknown values"
    );
}
