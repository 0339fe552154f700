//! Source files and positions: byte offsets are the currency everywhere; a [`LineIndex`] turns
//! them into 1-based lines and 1-based columns (counted in characters) only when rendering.

use crate::diagnostic::{FileId, Span};

/// A 1-based line and 1-based column (in characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineCol {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number in characters, starting at 1.
    pub col: u32,
}

/// Maps byte offsets of one text to lines and columns, and back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineIndex {
    /// Byte offset of the first byte of every line.
    line_starts: Vec<u32>,
    /// Length of the text in bytes.
    len: u32,
}

impl LineIndex {
    /// Indexes `text`. A line ends after `\n`; a `\r` before it belongs to the line.
    #[must_use]
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| offset_u32(i + 1)),
        );
        LineIndex {
            line_starts,
            len: offset_u32(text.len()),
        }
    }

    /// The number of lines (an empty text has one line).
    #[must_use]
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// The 0-based line containing byte `offset` (clamped to the text).
    fn line_of(&self, offset: u32) -> usize {
        let offset = offset.min(self.len);
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    /// The byte range of 1-based `line` without its line terminator, if the line exists.
    #[must_use]
    pub fn line_span(&self, text: &str, line: u32) -> Option<Span> {
        let i = usize::try_from(line).ok()?.checked_sub(1)?;
        let start = *self.line_starts.get(i)?;
        let mut end = self.line_starts.get(i + 1).copied().unwrap_or(self.len);
        let bytes = text.as_bytes();
        while end > start && matches!(bytes.get(end as usize - 1), Some(b'\n' | b'\r')) {
            end -= 1;
        }
        Some(Span::new(start, end))
    }

    /// Line and column of byte `offset` in `text` (the text this index was built from). An
    /// offset inside a multi-byte character counts as that character.
    #[must_use]
    pub fn line_col(&self, text: &str, offset: u32) -> LineCol {
        let offset = offset.min(self.len);
        let line = self.line_of(offset);
        let start = self.line_starts[line] as usize;
        let prefix = text.get(start..offset as usize).map_or_else(
            || {
                // Offset inside a character: count the characters that start before it.
                text.get(start..)
                    .unwrap_or("")
                    .char_indices()
                    .take_while(|&(i, _)| start + i < offset as usize)
                    .count()
                    .saturating_sub(1)
            },
            |s| s.chars().count(),
        );
        LineCol {
            line: offset_u32(line + 1),
            col: offset_u32(prefix + 1),
        }
    }

    /// Byte offset of 1-based `line` and 0-based character column `col` (as saphyr reports
    /// them); clamped to the end of the line.
    #[must_use]
    pub fn offset_of(&self, text: &str, line: usize, col: usize) -> u32 {
        let Some(&start) = line.checked_sub(1).and_then(|l| self.line_starts.get(l)) else {
            return self.len;
        };
        let rest = text.get(start as usize..).unwrap_or("");
        let within = rest.char_indices().nth(col).map_or(rest.len(), |(i, _)| i);
        start + offset_u32(within)
    }
}

/// Converts a `usize` offset to the `u32` used by spans, saturating (files over 4 GiB are
/// refused before they get here).
#[must_use]
pub(crate) fn offset_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One loaded source text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Its id in the [`SourceMap`].
    pub id: FileId,
    /// Display name (a path, or `<stdin>`).
    pub name: String,
    /// The text.
    pub text: String,
    /// Line starts of `text`.
    pub line_index: LineIndex,
}

impl SourceFile {
    /// Line and column of byte `offset`.
    #[must_use]
    pub fn line_col(&self, offset: u32) -> LineCol {
        self.line_index.line_col(&self.text, offset)
    }

    /// The text of 1-based `line` without its terminator.
    #[must_use]
    pub fn line_text(&self, line: u32) -> &str {
        self.line_index
            .line_span(&self.text, line)
            .and_then(|s| self.text.get(s.range()))
            .unwrap_or("")
    }
}

/// All files loaded in one run; diagnostics refer to them by [`FileId`].
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        let text = text.into();
        let id = FileId(offset_u32(self.files.len()));
        self.files.push(SourceFile {
            id,
            name: name.into(),
            line_index: LineIndex::new(&text),
            text,
        });
        id
    }

    /// The file with this id.
    #[must_use]
    pub fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    /// Every file, in the order added.
    pub fn iter(&self) -> impl Iterator<Item = &SourceFile> {
        self.files.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let text = "ab\né x\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_col(text, 0), LineCol { line: 1, col: 1 });
        assert_eq!(idx.line_col(text, 3), LineCol { line: 2, col: 1 });
        // `x` is after a two-byte `é` and a space.
        assert_eq!(idx.line_col(text, 6), LineCol { line: 2, col: 3 });
        // Inside `é`: that character.
        assert_eq!(idx.line_col(text, 4), LineCol { line: 2, col: 1 });
        assert_eq!(idx.line_col(text, 100), LineCol { line: 3, col: 1 });
    }

    #[test]
    fn offset_of_inverts_saphyr_markers() {
        let text = "a: é\r\nb: x";
        let idx = LineIndex::new(text);
        assert_eq!(idx.offset_of(text, 1, 3), 3);
        assert_eq!(idx.offset_of(text, 2, 3), 10);
        assert_eq!(idx.line_span(text, 1), Some(Span::new(0, 5)));
        assert_eq!(idx.line_count(), 2);
    }
}
