//! Tables for people: columns sized to their widest cell (a long job id
//! widens its column instead of breaking the layout), no borders, no
//! wrapping, trailing spaces trimmed. Scripts use `--json`.

use comfy_table::{presets::NOTHING, CellAlignment, ContentArrangement, Table};

/// A table with `headers`; columns whose index is in `right` are
/// right-aligned (counts, ages).
pub struct Rows {
    table: Table,
    right: &'static [usize],
}

impl Rows {
    pub fn new(headers: &[&str], right: &'static [usize]) -> Self {
        let mut table = Table::new();
        table
            .load_preset(NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(headers.iter().copied());
        Self { table, right }
    }

    pub fn push<S: ToString>(&mut self, row: impl IntoIterator<Item = S>) {
        self.table
            .add_row(row.into_iter().map(|c| c.to_string()).collect::<Vec<_>>());
    }

    /// The table's lines, each with `indent` in front.
    pub fn render(mut self, indent: &str) -> String {
        for &i in self.right {
            if let Some(c) = self.table.column_mut(i) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
        let mut out = String::new();
        for line in self.table.lines() {
            // The preset pads every cell with one space on each side.
            let line = line.strip_prefix(' ').unwrap_or(&line).trim_end();
            out.push_str(indent);
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let mut t = Rows::new(&["ID", "N"], &[1]);
        t.push(["a", "1"]);
        t.push([
            "a-very-long-job-id-that-is-longer-than-any-fixed-width",
            "22",
        ]);
        let text = t.render("");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        // Every row's second column starts at the same place.
        let col = |l: &str| l.rfind(' ').map(|i| i + 1);
        assert!(
            lines[1].ends_with(" 1") && lines[2].ends_with("22"),
            "{text}"
        );
        assert_eq!(lines[1].len(), lines[2].len(), "right-aligned: {text}");
        assert!(col(lines[0]).is_some());
        assert!(lines[0].starts_with("ID "), "{text}");
    }
}
