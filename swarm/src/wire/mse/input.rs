//! The bounded receive buffer both handshake roles share. It takes from each chunk exactly
//! the bytes that belong to the handshake, so whatever follows stays with the caller as
//! payload, and it never holds more than [`MAX_BUFFERED`] bytes.

use super::MAX_BUFFERED;

/// Outcome of scanning for a synchronisation pattern.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sync {
    /// Not seen yet; more bytes may still bring it.
    Pending,
    /// Seen: the buffer ends with it.
    Found,
    /// The window closed without it.
    Missing,
}

#[derive(Debug, Default)]
pub(super) struct Input {
    buf: Vec<u8>,
}

impl Input {
    /// Takes bytes from `data` until `n` are held; returns how many it took and whether `n`
    /// are now held.
    pub(super) fn fill(&mut self, data: &[u8], n: usize) -> (usize, bool) {
        debug_assert!(n <= MAX_BUFFERED);
        let take = n.saturating_sub(self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        (take, self.buf.len() >= n)
    }

    /// Looks for `pattern` starting within `max_skip` bytes of the buffer's start. Takes bytes
    /// only up to the end of the pattern, so nothing after it is consumed.
    pub(super) fn sync(&mut self, data: &[u8], pattern: &[u8], max_skip: usize) -> (usize, Sync) {
        let window = max_skip + pattern.len();
        debug_assert!(window <= MAX_BUFFERED);
        let old = self.buf.len();
        let take = window.saturating_sub(old).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        // Everything starting before `from` was searched on earlier calls.
        let from = old.saturating_sub(pattern.len() - 1);
        if let Some(at) = self.buf[from..]
            .windows(pattern.len())
            .position(|w| w == pattern)
        {
            let end = from + at + pattern.len();
            self.buf.truncate(end);
            return (end - old, Sync::Found);
        }
        let state = if self.buf.len() >= window {
            Sync::Missing
        } else {
            Sync::Pending
        };
        (take, state)
    }

    /// The bytes held.
    pub(super) fn bytes(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// How many bytes are held.
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Forgets the bytes held (the phase that needed them is over).
    pub(super) fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_takes_exactly_up_to_the_pattern() {
        let mut i = Input::default();
        let stream = b"xxxxabcdREST";
        // Fed one byte at a time, the pattern straddles calls.
        let mut used = 0;
        let mut state = Sync::Pending;
        while state == Sync::Pending {
            let (n, s) = i.sync(&stream[used..used + 1], b"abcd", 10);
            used += n;
            state = s;
        }
        assert_eq!(state, Sync::Found);
        assert_eq!(used, 8);
        // Fed at once, the rest is left alone.
        let mut i = Input::default();
        assert_eq!(i.sync(stream, b"abcd", 10), (8, Sync::Found));
        assert_eq!(i.bytes(), b"xxxxabcd");
    }

    #[test]
    fn sync_window_is_bounded() {
        let mut i = Input::default();
        let junk = vec![7u8; 5000];
        let (n, s) = i.sync(&junk, b"abcd", 10);
        assert_eq!((n, s), (14, Sync::Missing));
        assert_eq!(i.len(), 14);
        // The pattern may start at the last allowed offset.
        let mut i = Input::default();
        let mut data = vec![7u8; 10];
        data.extend_from_slice(b"abcd");
        assert_eq!(i.sync(&data, b"abcd", 10), (14, Sync::Found));
    }

    #[test]
    fn fill_stops_at_n() {
        let mut i = Input::default();
        assert_eq!(i.fill(b"abc", 5), (3, false));
        assert_eq!(i.fill(b"defgh", 5), (2, true));
        assert_eq!(i.bytes(), b"abcde");
    }
}
