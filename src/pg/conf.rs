//! PostgreSQL's configuration-file syntax, as far as walwarden writes it:
//! a value as a string literal, for postgresql.conf, postgresql.auto.conf
//! and recovery.conf (one parser reads all three). Used by the restore's
//! recovery configuration, the helper's restore_command line and the
//! target's settings.

/// `value` as a postgresql.conf / recovery.conf string literal: `'` doubled,
/// and `\` doubled because the parser reads backslash escapes.
pub fn conf_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str(r"\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_and_backslashes_are_doubled() {
        assert_eq!(super::conf_string(r"a'b\c"), r"'a''b\\c'");
    }
}
