//! ClamAV's text normaliser (libclamav/textnorm.c), byte for byte: ASCII
//! upper case is lowered, each run of whitespace (`\t \n \v \f \r` and space)
//! becomes one space, other control bytes and every byte above 0x7f are
//! dropped. Streaming: the state (whether a space was just written) carries
//! across [`TextNormalizer::feed`] calls.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Skip,
    Space,
    Lower,
    Copy,
}

const fn action(c: u8) -> Action {
    match c {
        9..=13 | b' ' => Action::Space,
        b'A'..=b'Z' => Action::Lower,
        0x21..=0x7f => Action::Copy,
        _ => Action::Skip,
    }
}

/// Streaming text normaliser.
#[derive(Debug, Default, Clone)]
pub struct TextNormalizer {
    space_written: bool,
}

impl TextNormalizer {
    pub fn new() -> TextNormalizer {
        TextNormalizer::default()
    }

    /// Normalise `input`, appending to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &c in input {
            match action(c) {
                Action::Skip => {}
                Action::Space => {
                    if !self.space_written {
                        out.push(b' ');
                    }
                    self.space_written = true;
                }
                Action::Lower => {
                    self.space_written = false;
                    out.push(c + 32);
                }
                Action::Copy => {
                    self.space_written = false;
                    out.push(c);
                }
            }
        }
    }
}

/// Normalise a whole buffer.
pub fn normalize_text(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    TextNormalizer::new().feed(input, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_collapses_whitespace_and_drops_the_rest() {
        assert_eq!(
            normalize_text(b"  For\tMORE \r\n\x0b\x0cInform\x00\x01\x7f\x80\xff!"),
            b" for more inform\x7f!".to_vec()
        );
    }

    #[test]
    fn streaming_equals_whole_buffer_at_every_split() {
        let input = b"A  B\n\n C\xe9\t\tD";
        let whole = normalize_text(input);
        for cut in 0..=input.len() {
            let mut n = TextNormalizer::new();
            let mut out = Vec::new();
            n.feed(&input[..cut], &mut out);
            n.feed(&input[cut..], &mut out);
            assert_eq!(out, whole, "split at {cut}");
        }
    }

    #[test]
    fn dropped_bytes_do_not_break_a_whitespace_run() {
        // textnorm.c skips the byte without touching the space state.
        assert_eq!(normalize_text(b"a \x00 b"), b"a b".to_vec());
    }
}
