//! Passwords in query texts are masked before a snapshot leaves the collector:
//! pg_stat_activity shows statements while they run or as a session's last query, and
//! pg_stat_statements keeps utility statements' literals. Masked: the literal after a
//! `PASSWORD` keyword (`CREATE ROLE … PASSWORD 'x'`, `PASSWORD'x'`, a comment in between,
//! `OPTIONS (password 'x')` of user mappings), `password=` in conninfo literals
//! (`CREATE SUBSCRIPTION … CONNECTION '…'`, `dblink_connect('…')`), and the password of
//! `postgresql://user:password@host` URIs and their `?password=` parameter.
//!
//! The text is read with PostgreSQL's lexical rules (quotes, `E''`, dollar quotes with tags,
//! nested comments), so a keyword inside a string or a comment is not mistaken for one. Texts
//! cut off by truncation end in an unterminated token; one that may hold a password is masked
//! to the end.

use std::borrow::Cow;

/// What replaces a password.
const MASK: &str = "********";

/// `text` with every password masked; borrowed when nothing is.
pub(crate) fn redact_passwords(text: &str) -> Cow<'_, str> {
    // The common case costs one scan: no keyword and no URI, nothing to lex.
    if !contains_ignoring_ascii_case(text, "password") && !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut redacted = String::with_capacity(text.len());
    let mut copied_up_to = 0;
    let mut after_password_keyword = false;
    for token in Lexer::new(text) {
        match token.kind {
            TokenKind::Space | TokenKind::Comment => continue,
            TokenKind::Literal { content, terminated } => {
                let replacement = if after_password_keyword {
                    Some(format!("'{MASK}'"))
                } else {
                    mask_connection_passwords(&content, terminated).map(|masked| quoted(&masked, terminated))
                };
                if let Some(replacement) = replacement {
                    redacted.push_str(&text[copied_up_to..token.start]);
                    redacted.push_str(&replacement);
                    copied_up_to = token.end;
                }
                after_password_keyword = false;
            }
            TokenKind::Word => {
                let word = &text[token.start..token.end];
                // `PASSWORDE'x'` is one identifier and a string to PostgreSQL (a syntax error,
                // still shown as the session's last query): masked like `PASSWORD E'x'`.
                let glued_to_literal = text[token.end..].starts_with('\'')
                    && word.len() > "password".len()
                    && word.is_char_boundary("password".len())
                    && word[.."password".len()].eq_ignore_ascii_case("password");
                after_password_keyword = word.eq_ignore_ascii_case("password") || glued_to_literal;
            }
            // An option name may be quoted: OPTIONS (SET "password" 'x').
            TokenKind::QuotedName => after_password_keyword = text[token.start..token.end].trim_matches('"') == "password",
            TokenKind::Other => after_password_keyword = false,
        }
    }
    if copied_up_to == 0 {
        return Cow::Borrowed(text);
    }
    redacted.push_str(&text[copied_up_to..]);
    Cow::Owned(redacted)
}

fn contains_ignoring_ascii_case(text: &str, lowercase_needle: &str) -> bool {
    text.as_bytes()
        .windows(lowercase_needle.len())
        .any(|window| window.eq_ignore_ascii_case(lowercase_needle.as_bytes()))
}

/// A standard SQL literal of `content` (closed only if the original was).
fn quoted(content: &str, terminated: bool) -> String {
    let escaped = content.replace('\'', "''");
    if terminated {
        format!("'{escaped}'")
    } else {
        format!("'{escaped}")
    }
}

/// `content` with conninfo and URI passwords masked, or `None` when it holds none.
fn mask_connection_passwords(content: &str, terminated: bool) -> Option<String> {
    let lowered = content.to_ascii_lowercase();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    // conninfo: `password = value` where a key may start (start or after whitespace); the
    // value is '…' with backslash escapes, or runs to the next whitespace.
    let mut search_from = 0;
    while let Some(found) = lowered[search_from..].find("password") {
        let key_start = search_from + found;
        search_from = key_start + "password".len();
        let in_uri_query = lowered[..key_start].ends_with(['?', '&']);
        let at_key_start = key_start == 0 || in_uri_query || lowered[..key_start].ends_with(char::is_whitespace);
        let Some(after_equals) = content[search_from..].trim_start().strip_prefix('=') else {
            continue;
        };
        if !at_key_start {
            continue;
        }
        let value_start = content.len() - after_equals.trim_start().len();
        let value_end = if in_uri_query {
            content[value_start..]
                .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
                .map_or(content.len(), |offset| value_start + offset)
        } else {
            conninfo_value_end(content, value_start)
        };
        ranges.push((value_start, value_end));
    }
    // URIs: the password of `scheme://user:password@host`. Cut off before its '@', the rest of
    // an unterminated literal may be a password: all of it is masked.
    let mut search_from = 0;
    while let Some(found) = content[search_from..].find("://") {
        let authority_start = search_from + found + 3;
        search_from = authority_start;
        let authority_end = content[authority_start..]
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '\'')
            .map_or(content.len(), |offset| authority_start + offset);
        let authority = &content[authority_start..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                if let Some(colon) = authority[..at].find(':') {
                    ranges.push((authority_start + colon + 1, authority_start + at));
                }
            }
            None if !terminated && authority_end == content.len() => ranges.push((authority_start, content.len())),
            None => {}
        }
    }
    if ranges.is_empty() {
        return None;
    }
    ranges.sort_unstable();
    let mut masked = String::with_capacity(content.len());
    let mut copied_up_to = 0;
    for (start, end) in ranges {
        if start < copied_up_to {
            continue;
        }
        masked.push_str(&content[copied_up_to..start]);
        masked.push_str(MASK);
        copied_up_to = end;
    }
    masked.push_str(&content[copied_up_to..]);
    Some(masked)
}

/// Where a conninfo value starting at `start` ends.
fn conninfo_value_end(content: &str, start: usize) -> usize {
    let value = &content[start..];
    if let Some(quoted) = value.strip_prefix('\'') {
        let mut escaped = false;
        for (offset, character) in quoted.char_indices() {
            match character {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return start + 1 + offset + 1,
                _ => {}
            }
        }
        return content.len();
    }
    value.find(char::is_whitespace).map_or(content.len(), |offset| start + offset)
}

#[derive(Debug, PartialEq)]
enum TokenKind {
    Space,
    Comment,
    /// A keyword or identifier.
    Word,
    /// A quoted identifier.
    QuotedName,
    /// A string constant, its content with the quoting undone.
    Literal {
        content: String,
        terminated: bool,
    },
    Other,
}

struct Token {
    kind: TokenKind,
    start: usize,
    end: usize,
}

/// PostgreSQL's lexical structure, as far as finding literals needs it.
struct Lexer<'text> {
    text: &'text str,
    position: usize,
}

impl<'text> Lexer<'text> {
    fn new(text: &'text str) -> Lexer<'text> {
        Lexer { text, position: 0 }
    }

    fn rest(&self) -> &'text str {
        &self.text[self.position..]
    }

    /// A quoted string starting at `quote` (the offset of its opening `'`), with backslash
    /// escapes when `with_escapes` (E'' strings).
    fn quoted_string(&mut self, quote: usize, with_escapes: bool) -> TokenKind {
        let mut content = String::new();
        let mut characters = self.text[quote + 1..].char_indices().peekable();
        while let Some((offset, character)) = characters.next() {
            match character {
                '\'' if characters.peek().map(|(_, next)| *next) == Some('\'') => {
                    characters.next();
                    content.push('\'');
                }
                '\'' => {
                    self.position = quote + 1 + offset + 1;
                    return TokenKind::Literal { content, terminated: true };
                }
                '\\' if with_escapes => {
                    if let Some((_, escaped)) = characters.next() {
                        content.push(escaped);
                    }
                }
                other => content.push(other),
            }
        }
        self.position = self.text.len();
        TokenKind::Literal {
            content,
            terminated: false,
        }
    }

    /// A dollar quote `$tag$…$tag$` if one starts here.
    fn dollar_quoted(&mut self) -> Option<TokenKind> {
        let rest = self.rest();
        let tag_length = rest[1..].find('$')? + 2;
        let tag = &rest[..tag_length];
        let tag_body = &tag[1..tag_length - 1];
        let is_tag = tag_body
            .chars()
            .enumerate()
            .all(|(index, c)| c == '_' || c.is_alphabetic() || (index > 0 && c.is_ascii_digit()));
        if !is_tag {
            return None;
        }
        let body = &rest[tag_length..];
        let (content, terminated, consumed) = match body.find(tag) {
            Some(end) => (&body[..end], true, tag_length + end + tag_length),
            None => (body, false, rest.len()),
        };
        self.position += consumed;
        Some(TokenKind::Literal {
            content: content.to_owned(),
            terminated,
        })
    }

    fn block_comment(&mut self) {
        let mut depth = 0usize;
        let bytes = self.text.as_bytes();
        while self.position < bytes.len() {
            if bytes[self.position..].starts_with(b"/*") {
                depth += 1;
                self.position += 2;
            } else if bytes[self.position..].starts_with(b"*/") {
                depth -= 1;
                self.position += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.position += 1;
            }
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        let start = self.position;
        let rest = self.rest();
        let first = rest.chars().next()?;
        let is_word_character = |c: char| c == '_' || c == '$' || c.is_alphanumeric();
        let kind = if first.is_whitespace() {
            self.position += rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
            TokenKind::Space
        } else if rest.starts_with("--") {
            self.position += rest.find('\n').unwrap_or(rest.len());
            TokenKind::Comment
        } else if rest.starts_with("/*") {
            self.block_comment();
            TokenKind::Comment
        } else if first == '\'' {
            self.quoted_string(start, false)
        } else if matches!(first, 'e' | 'E') && rest[1..].starts_with('\'') {
            self.quoted_string(start + 1, true)
        } else if matches!(first, 'n' | 'N') && rest[1..].starts_with('\'') {
            self.quoted_string(start + 1, false)
        } else if matches!(first, 'u' | 'U') && rest[1..].starts_with("&'") {
            self.quoted_string(start + 2, false)
        } else if first == '$' {
            match self.dollar_quoted() {
                Some(literal) => literal,
                None => {
                    // A parameter ($1) or a lone dollar.
                    self.position += 1 + rest[1..].find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len() - 1);
                    TokenKind::Other
                }
            }
        } else if first == '"' {
            self.position += rest[1..].find('"').map_or(rest.len(), |end| end + 2);
            TokenKind::QuotedName
        } else if is_word_character(first) {
            let mut length = rest.find(|c: char| !is_word_character(c)).unwrap_or(rest.len());
            // `PASSWORD$$x$$` is one identifier to PostgreSQL (a syntax error, still shown as
            // the session's last query); read as the keyword and a dollar quote, to mask it.
            if length > "password$".len() && rest.is_char_boundary(9) && rest[..9].eq_ignore_ascii_case("password$") {
                length = "password".len();
            }
            self.position += length;
            TokenKind::Word
        } else {
            self.position += first.len_utf8();
            TokenKind::Other
        };
        Some(Token {
            kind,
            start,
            end: self.position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn password_literals_are_masked_and_the_rest_is_kept() {
        let cases = [
            (
                "CREATE ROLE app LOGIN PASSWORD 'it''s secret' VALID UNTIL 'infinity'",
                "CREATE ROLE app LOGIN PASSWORD '********' VALID UNTIL 'infinity'",
            ),
            (
                "alter user app with encrypted password E'a\\'b'",
                "alter user app with encrypted password '********'",
            ),
            ("ALTER ROLE x PASSWORD $$p$w$$;", "ALTER ROLE x PASSWORD '********';"),
            ("ALTER ROLE x PASSWORD $pw$a$$b$pw$;", "ALTER ROLE x PASSWORD '********';"),
            ("ALTER ROLE x PASSWORD'glued'", "ALTER ROLE x PASSWORD'********'"),
            (
                "ALTER ROLE x PASSWORD /* why */ 'c' -- note\n",
                "ALTER ROLE x PASSWORD /* why */ '********' -- note\n",
            ),
            (
                "ALTER ROLE x PASSWORD -- new one\n 'd'",
                "ALTER ROLE x PASSWORD -- new one\n '********'",
            ),
            ("ALTER ROLE x PASSWORD U&'e'", "ALTER ROLE x PASSWORD '********'"),
            ("ALTER ROLE x PASSWORD 'cut off by trunc", "ALTER ROLE x PASSWORD '********'"),
            (
                "CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'app', password 'f')",
                "CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'app', password '********')",
            ),
            (
                "CREATE SUBSCRIPTION s CONNECTION 'host=h user=u password=g dbname=d' PUBLICATION p",
                "CREATE SUBSCRIPTION s CONNECTION 'host=h user=u password=******** dbname=d' PUBLICATION p",
            ),
            (
                "SELECT dblink_connect('c', 'host=h password = ''h i\\''j'' dbname=d')",
                "SELECT dblink_connect('c', 'host=h password = ******** dbname=d')",
            ),
            (
                "SELECT dblink('postgresql://app:k%40l@db.internal:5432/d', 'SELECT 1')",
                "SELECT dblink('postgresql://app:********@db.internal:5432/d', 'SELECT 1')",
            ),
            (
                "SELECT dblink('postgres://h/d?user=u&password=m&sslmode=require', 'x')",
                "SELECT dblink('postgres://h/d?user=u&password=********&sslmode=require', 'x')",
            ),
            (
                "SELECT dblink_connect('postgresql://u:cut-off",
                "SELECT dblink_connect('postgresql://********",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(redact_passwords(text), expected, "{text}");
        }
    }

    #[test]
    fn look_alikes_are_kept() {
        for text in [
            "SELECT password_hash FROM users WHERE id = $1",
            "SELECT 'the password column' AS note, \"password\" FROM t",
            "SELECT a FROM t WHERE b = 'password' OR c LIKE '%://%'",
            "UPDATE users SET password = $1 WHERE id = $2",
            "SET password_encryption = 'scram-sha-256'",
            "SELECT 'see https://example.com/docs' -- password 'not a literal'",
            "SELECT 1",
        ] {
            assert!(matches!(redact_passwords(text), Cow::Borrowed(_)), "{text} was changed");
        }
    }

    /// A password that never appears in the statements around it.
    fn password() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 '\"\\\\$@:/%=&?;*-]{1,24}".prop_map(|tail| format!("Zq{tail}"))
    }

    /// The password as a SQL string constant, in one of PostgreSQL's forms.
    fn sql_literal(password: &str, form: u8) -> String {
        match form % 3 {
            0 => format!("'{}'", password.replace('\'', "''")),
            1 => format!("E'{}'", password.replace('\\', "\\\\").replace('\'', "\\'")),
            _ => format!("$pw${password}$pw$"),
        }
    }

    /// The password as a conninfo value (quoted as libpq reads it).
    fn conninfo_value(password: &str) -> String {
        format!("'{}'", password.replace('\\', "\\\\").replace('\'', "\\'"))
    }

    fn statements_holding(password: &str, form: u8) -> Vec<String> {
        let literal = sql_literal(password, form);
        let conninfo = format!("host=h user=u password={} dbname=d", conninfo_value(password));
        // Percent-encoded as URIs need, letters and digits kept so a leak stays visible.
        let encoded: String = password
            .bytes()
            .map(|byte| {
                if byte.is_ascii_alphanumeric() {
                    (byte as char).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect();
        vec![
            format!("CREATE ROLE app LOGIN PASSWORD {literal} VALID UNTIL 'infinity'"),
            format!("ALTER USER app WITH ENCRYPTED PASSWORD /* rotated */ {literal};"),
            format!("ALTER ROLE app PASSWORD{literal}"),
            format!("ALTER SERVER s OPTIONS (SET password {literal})"),
            format!("CREATE SUBSCRIPTION s CONNECTION {} PUBLICATION p", sql_literal(&conninfo, form)),
            format!("SELECT dblink_connect('c', {})", sql_literal(&conninfo, form)),
            format!("SELECT dblink('postgresql://app:{encoded}@h:5432/d', 'SELECT 1')"),
            format!("SELECT dblink('postgresql://app@h/d?password={encoded}', 'SELECT 1')"),
        ]
    }

    proptest! {
        #[test]
        fn no_password_survives_in_any_form_or_truncation(password in password(), form in 0u8..3) {
            prop_assume!(!password.contains("$pw$"));
            for statement in statements_holding(&password, form) {
                let redacted = redact_passwords(&statement);
                prop_assert!(!redacted.contains("Zq"), "{statement} became {redacted}");
                // Truncated anywhere (pg_stat_activity cuts at track_activity_query_size).
                for (cut, _) in statement.char_indices() {
                    let redacted = redact_passwords(&statement[..cut]);
                    prop_assert!(!redacted.contains("Zq"), "{} became {redacted}", &statement[..cut]);
                }
            }
        }

        #[test]
        fn texts_without_passwords_are_returned_as_they_are(text in "[a-zA-Z0-9 ',()=;$_-]{0,80}") {
            prop_assume!(!text.to_ascii_lowercase().contains("password"));
            prop_assert!(matches!(redact_passwords(&text), Cow::Borrowed(_)));
        }
    }
}
