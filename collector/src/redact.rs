//! Passwords in query texts (`CREATE ROLE … PASSWORD '…'`, `ALTER USER … PASSWORD '…'`) are
//! masked before a snapshot leaves the collector: pg_stat_activity shows such statements while
//! they run or as a session's last query, and pg_stat_statements keeps utility statements'
//! literals.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// The keyword and its literal: a quoted string (E'' too, possibly cut off by truncation) or a
/// `$$`-quoted one (tagged dollar quotes would need back-references, which `regex` lacks; the
/// whole rest of the text is masked for them).
static PASSWORD_LITERAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?is)(\bpassword\s+)(?:E?'(?:[^'\\]|''|\\.)*(?:'|$)|\$\$.*?(?:\$\$|$)|\$[a-z_][a-z_0-9]*\$.*$)")
        .expect("the password pattern compiles")
});

/// `text` with every password literal replaced by `'********'`.
pub(crate) fn redact_passwords(text: &str) -> Cow<'_, str> {
    PASSWORD_LITERAL.replace_all(text, "${1}'********'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_literals_are_masked_and_the_rest_is_kept() {
        assert_eq!(
            redact_passwords("CREATE ROLE app LOGIN PASSWORD 'it''s secret' VALID UNTIL 'infinity'"),
            "CREATE ROLE app LOGIN PASSWORD '********' VALID UNTIL 'infinity'"
        );
        assert_eq!(
            redact_passwords("alter user app with encrypted password E'a\\'b'"),
            "alter user app with encrypted password '********'"
        );
        assert_eq!(
            redact_passwords("ALTER ROLE x PASSWORD $$p$w$$;"),
            "ALTER ROLE x PASSWORD '********';"
        );
        assert_eq!(
            redact_passwords("ALTER ROLE x PASSWORD 'cut off by trunc"),
            "ALTER ROLE x PASSWORD '********'"
        );
        assert_eq!(
            redact_passwords("SELECT password_hash FROM users WHERE id = $1"),
            "SELECT password_hash FROM users WHERE id = $1"
        );
        assert!(matches!(redact_passwords("SELECT 1"), Cow::Borrowed(_)));
    }
}
