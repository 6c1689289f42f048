//! A strict, streaming CSV reader (RFC 4180, comma-separated) for contact imports.
//!
//! Bytes are pushed in as they arrive from the request body and complete records come out,
//! so an upload is never held in memory beyond the record being read. Unlike lenient readers,
//! it reports the errors that mean the file is damaged rather than one row being bad: a quoted
//! field still open at the end of the file, text after a closing quote, or a record longer
//! than the limit (usually a stray quote swallowing the rest of the file).
//!
//! Rows are numbered from 1 as a spreadsheet shows them: the header is row 1, and blank lines
//! count as rows (they are skipped, not returned). A record spanning several lines through a
//! quoted line break is one row. Line ends are `\n`, `\r\n` or `\r`; a quote inside an
//! unquoted field is kept as it is; a UTF-8 byte order mark at the start is dropped.

/// One record: its row number and its fields as raw bytes (not yet checked as UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub row: u64,
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Record {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&[u8]> {
        let end = *self.ends.get(index)?;
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1],
        };
        Some(&self.buf[start..end])
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("malformed CSV at row {row}: a quoted field is not closed before the end of the file")]
    UnterminatedQuote { row: u64 },
    #[error(
        "malformed CSV at row {row}: unexpected character after a closing quote (a quote inside a quoted field must be doubled)"
    )]
    TextAfterQuote { row: u64 },
    #[error(
        "malformed CSV at row {row}: the record is longer than {limit} bytes (an unbalanced quote?)"
    )]
    RecordTooLong { row: u64, limit: usize },
}

impl CsvError {
    pub fn row(&self) -> u64 {
        match self {
            Self::UnterminatedQuote { row }
            | Self::TextAfterQuote { row }
            | Self::RecordTooLong { row, .. } => *row,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field (and of a record when `started` is false).
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the closing one, or the first of a doubled pair.
    QuoteInQuoted,
    /// Just after a `\r` that ended a record; a `\n` now belongs to it.
    AfterCr,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

pub struct Reader {
    state: State,
    /// Row of the record being read.
    row: u64,
    /// Whether the current record has any content (else a line end makes a blank line).
    started: bool,
    buf: Vec<u8>,
    ends: Vec<usize>,
    max_record_bytes: usize,
    /// Bytes at the very start kept until we know whether they are a byte order mark.
    head: Option<Vec<u8>>,
}

impl Reader {
    pub fn new(max_record_bytes: usize) -> Self {
        Self {
            state: State::FieldStart,
            row: 1,
            started: false,
            buf: Vec::new(),
            ends: Vec::new(),
            max_record_bytes,
            head: Some(Vec::new()),
        }
    }

    /// Reads `input`, appending each record it completes to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Record>) -> Result<(), CsvError> {
        if let Some(mut head) = self.head.take() {
            head.extend_from_slice(input);
            if head.len() < BOM.len() && BOM.starts_with(&head) {
                self.head = Some(head);
                return Ok(());
            }
            let rest = head.strip_prefix(BOM).unwrap_or(&head);
            return self.read(rest, out);
        }
        self.read(input, out)
    }

    /// Ends the input: the last record may lack its line end.
    pub fn finish(&mut self, out: &mut Vec<Record>) -> Result<(), CsvError> {
        if let Some(head) = self.head.take() {
            let rest = head.strip_prefix(BOM).unwrap_or(&head);
            self.read(rest, out)?;
        }
        match self.state {
            State::Quoted => Err(CsvError::UnterminatedQuote { row: self.row }),
            State::AfterCr => Ok(()),
            State::FieldStart | State::Unquoted | State::QuoteInQuoted => {
                self.end_record(out);
                Ok(())
            }
        }
    }

    fn read(&mut self, input: &[u8], out: &mut Vec<Record>) -> Result<(), CsvError> {
        for &byte in input {
            self.state = match (self.state, byte) {
                (State::AfterCr, b'\n') => State::FieldStart,
                (State::FieldStart | State::AfterCr, b'"') => {
                    self.started = true;
                    State::Quoted
                }
                (
                    State::FieldStart | State::AfterCr | State::Unquoted | State::QuoteInQuoted,
                    b',',
                ) => {
                    self.started = true;
                    self.ends.push(self.buf.len());
                    State::FieldStart
                }
                (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b'\n') => {
                    self.end_record(out);
                    State::FieldStart
                }
                (
                    State::FieldStart | State::AfterCr | State::Unquoted | State::QuoteInQuoted,
                    b'\r',
                ) => {
                    self.end_record(out);
                    State::AfterCr
                }
                (State::FieldStart | State::AfterCr | State::Unquoted, _) => {
                    self.started = true;
                    self.push(byte)?;
                    State::Unquoted
                }
                (State::Quoted, b'"') => State::QuoteInQuoted,
                (State::Quoted, _) => {
                    self.push(byte)?;
                    State::Quoted
                }
                (State::QuoteInQuoted, b'"') => {
                    self.push(b'"')?;
                    State::Quoted
                }
                (State::QuoteInQuoted, _) => {
                    return Err(CsvError::TextAfterQuote { row: self.row });
                }
            };
        }
        Ok(())
    }

    fn push(&mut self, byte: u8) -> Result<(), CsvError> {
        if self.buf.len() >= self.max_record_bytes {
            return Err(CsvError::RecordTooLong {
                row: self.row,
                limit: self.max_record_bytes,
            });
        }
        self.buf.push(byte);
        Ok(())
    }

    fn end_record(&mut self, out: &mut Vec<Record>) {
        if self.started {
            self.ends.push(self.buf.len());
            out.push(Record {
                row: self.row,
                buf: std::mem::take(&mut self.buf),
                ends: std::mem::take(&mut self.ends),
            });
        }
        self.started = false;
        self.row += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_in_pieces(input: &[u8], piece: usize) -> Result<Vec<(u64, Vec<String>)>, CsvError> {
        let mut reader = Reader::new(1 << 10);
        let mut out = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            reader.feed(chunk, &mut out)?;
        }
        reader.finish(&mut out)?;
        Ok(out
            .iter()
            .map(|r| {
                let fields = r
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                (r.row, fields)
            })
            .collect())
    }

    fn read(input: &str) -> Result<Vec<(u64, Vec<String>)>, CsvError> {
        let whole = read_in_pieces(input.as_bytes(), input.len());
        // Any split of the input into pieces gives the same result.
        for piece in 1..4 {
            assert_eq!(
                read_in_pieces(input.as_bytes(), piece),
                whole,
                "pieces of {piece}"
            );
        }
        whole
    }

    fn row(n: u64, fields: &[&str]) -> (u64, Vec<String>) {
        (n, fields.iter().map(|f| (*f).to_owned()).collect())
    }

    #[test]
    fn plain_quoted_and_escaped_fields() {
        assert_eq!(
            read("email,name\na@x.io,\"Doe, Jane\"\nb@x.io,\"say \"\"hi\"\"\"\n"),
            Ok(vec![
                row(1, &["email", "name"]),
                row(2, &["a@x.io", "Doe, Jane"]),
                row(3, &["b@x.io", "say \"hi\""]),
            ])
        );
    }

    #[test]
    fn line_ends_blank_lines_and_missing_final_newline() {
        assert_eq!(
            read("a,b\r\n\r\n1,2\r3,\n\n4,5"),
            Ok(vec![
                row(1, &["a", "b"]),
                row(3, &["1", "2"]),
                row(4, &["3", ""]),
                row(6, &["4", "5"]),
            ])
        );
        assert_eq!(read(""), Ok(vec![]));
        assert_eq!(read("a,"), Ok(vec![row(1, &["a", ""])]));
    }

    #[test]
    fn a_quoted_line_break_is_one_row() {
        assert_eq!(
            read("a,b\n\"1\n2\",3\n4,5\n"),
            Ok(vec![
                row(1, &["a", "b"]),
                row(2, &["1\n2", "3"]),
                row(3, &["4", "5"])
            ])
        );
    }

    #[test]
    fn byte_order_mark_is_dropped_and_stray_quotes_kept() {
        assert_eq!(
            read("\u{feff}email\nO\"Brien@x.io\n"),
            Ok(vec![row(1, &["email"]), row(2, &["O\"Brien@x.io"])])
        );
        assert_eq!(read("\u{feff}"), Ok(vec![]));
    }

    #[test]
    fn damage_is_reported_with_its_row() {
        assert_eq!(
            read("a,b\n1,2\n3,\"4\n5,6\n"),
            Err(CsvError::UnterminatedQuote { row: 3 })
        );
        assert_eq!(
            read("a,b\n\"1\"x,2\n"),
            Err(CsvError::TextAfterQuote { row: 2 })
        );
        let long = format!("a\n\"{}", "x".repeat(2000));
        assert_eq!(
            read_in_pieces(long.as_bytes(), 100),
            Err(CsvError::RecordTooLong {
                row: 2,
                limit: 1024
            })
        );
    }
}
