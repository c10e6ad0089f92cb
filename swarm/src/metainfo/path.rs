//! Turning path components from a torrent into names that are safe on every common file
//! system. A torrent is untrusted input: nothing it names may land outside the download folder.

/// Longest file name component in bytes (ext4, NTFS and APFS all stop at 255).
pub const MAX_COMPONENT_BYTES: usize = 255;

const WINDOWS_RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Makes one path component safe: path separators, control characters and characters that
/// Windows forbids become `_`; `.`/`..`/empty become `_`; reserved device names get a `_`
/// suffix; trailing dots and spaces are trimmed; overlong names are shortened keeping the
/// extension. The result is never empty and never contains a separator.
pub fn sanitize_component(raw: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(raw);
    let mut s: String = lossy
        .chars()
        .map(|c| match c {
            '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    while s.ends_with('.') || s.ends_with(' ') {
        s.pop();
    }
    if s.is_empty() || s == "." || s == ".." {
        return "_".to_string();
    }
    let stem = s.split('.').next().unwrap_or("");
    if WINDOWS_RESERVED
        .iter()
        .any(|r| r.eq_ignore_ascii_case(stem))
    {
        s.insert(stem.len(), '_');
    }
    if s.len() > MAX_COMPONENT_BYTES {
        s = shorten(&s);
    }
    s
}

/// Cuts a name to [`MAX_COMPONENT_BYTES`] on a character boundary, keeping a short extension.
fn shorten(s: &str) -> String {
    let ext = match s.rfind('.') {
        Some(i) if s.len() - i <= 16 => &s[i..],
        _ => "",
    };
    let mut cut = MAX_COMPONENT_BYTES - ext.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &s[..cut], ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_separators_are_neutralised() {
        assert_eq!(sanitize_component(b".."), "_");
        assert_eq!(sanitize_component(b"."), "_");
        assert_eq!(sanitize_component(b""), "_");
        assert_eq!(sanitize_component(b"/etc/passwd"), "_etc_passwd");
        assert_eq!(sanitize_component(b"..\\..\\x"), ".._.._x");
        assert_eq!(sanitize_component(b"a\0b\nc"), "a_b_c");
        assert_eq!(sanitize_component(b"C:"), "C_");
    }

    #[test]
    fn reserved_names_and_trailing_dots() {
        assert_eq!(sanitize_component(b"con"), "con_");
        assert_eq!(sanitize_component(b"NUL.txt"), "NUL_.txt");
        assert_eq!(sanitize_component(b"console"), "console");
        assert_eq!(sanitize_component(b"name. . "), "name");
        assert_eq!(sanitize_component(b"..."), "_");
    }

    #[test]
    fn long_names_keep_extension_and_char_boundaries() {
        let long = format!("{}.mkv", "é".repeat(300));
        let s = sanitize_component(long.as_bytes());
        assert!(s.len() <= MAX_COMPONENT_BYTES);
        assert!(s.ends_with(".mkv"));
        let invalid_utf8 = [0xff, 0xfe, b'a'];
        assert_eq!(sanitize_component(&invalid_utf8), "\u{fffd}\u{fffd}a");
    }
}
