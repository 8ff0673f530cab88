//! Hash tags: the part of a key that is hashed, so related keys land on one server.

/// The part of `key` that is hashed: with `tag` = Some([open, close]) (from a config
/// `hash_tag: "{}"`), the bytes between the first `open` and the first `close` after it when
/// that span is non-empty, else the whole key — as twemproxy's `server_pool_idx` does.
///
/// `"{user1000}.following"` hashes `"user1000"`; `"foo{}{bar}"` (an empty first span) and a key
/// with no `close` after its first `open` hash whole. `open` may equal `close` (`"$$"`).
pub fn hash_tag(key: &[u8], tag: Option<[u8; 2]>) -> &[u8] {
    let Some([open, close]) = tag else {
        return key;
    };
    let Some(start) = key.iter().position(|&b| b == open) else {
        return key;
    };
    let after = &key[start + 1..];
    match after.iter().position(|&b| b == close) {
        Some(len) if len > 0 => &after[..len],
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRACES: Option<[u8; 2]> = Some(*b"{}");

    #[test]
    fn the_span_inside_the_first_tag_is_hashed() {
        assert_eq!(hash_tag(b"{user1000}.following", BRACES), b"user1000");
        assert_eq!(hash_tag(b"user:{1000}:followers", BRACES), b"1000");
        // the first close after the first open, even if another open comes between
        assert_eq!(hash_tag(b"a{b{c}d}", BRACES), b"b{c");
        assert_eq!(hash_tag(b"x{a}{b}", BRACES), b"a");
    }

    #[test]
    fn an_empty_or_unclosed_tag_hashes_the_whole_key() {
        assert_eq!(hash_tag(b"foo{}{bar}", BRACES), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{bar", BRACES), b"foo{bar");
        // a close before the first open does not count
        assert_eq!(hash_tag(b"}foo{", BRACES), b"}foo{");
        assert_eq!(hash_tag(b"plain", BRACES), b"plain");
        assert_eq!(hash_tag(b"", BRACES), b"");
    }

    #[test]
    fn without_a_tag_the_whole_key_is_hashed() {
        assert_eq!(
            hash_tag(b"{user1000}.following", None),
            b"{user1000}.following"
        );
    }

    #[test]
    fn open_and_close_may_be_the_same_byte() {
        assert_eq!(hash_tag(b"a$bc$d$", Some(*b"$$")), b"bc");
        assert_eq!(hash_tag(b"a$$b", Some(*b"$$")), b"a$$b");
    }
}
