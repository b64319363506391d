//! Renders the results as a markdown table with a header naming the command and the machine.

use std::fmt::Write as _;

/// The columns of measured targets, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// The Outpost node.
    Outpost,
    /// `deno serve`.
    Deno,
    /// Cloudflare's workerd.
    Workerd,
    /// nginx returning a fixed 200: the non-JS ceiling.
    Nginx,
}

impl Target {
    /// Every target, in column order.
    pub const ALL: [Target; 4] = [
        Target::Outpost,
        Target::Deno,
        Target::Workerd,
        Target::Nginx,
    ];

    /// Lower-case name, as used by the peers script and the table header.
    pub fn name(self) -> &'static str {
        match self {
            Target::Outpost => "outpost",
            Target::Deno => "deno",
            Target::Workerd => "workerd",
            Target::Nginx => "nginx",
        }
    }

    /// Column index.
    fn index(self) -> usize {
        self as usize
    }
}

/// One table cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    /// Not measured for this target ("-").
    NotRun,
    /// The target failed to start or to answer ("n/a").
    Failed,
    /// One number.
    Num(f64),
    /// Two numbers shown as "a / b".
    Pair(f64, f64),
}

/// How a row's numbers are formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Requests per second: no decimals.
    Rate,
    /// Milliseconds.
    Millis,
    /// MiB.
    Mib,
}

/// One table row.
#[derive(Debug, Clone)]
pub struct Row {
    /// First column.
    pub label: String,
    /// One cell per [`Target`].
    pub cells: [Stat; 4],
    /// Number format.
    pub unit: Unit,
}

impl Row {
    /// A row with every cell [`Stat::NotRun`].
    pub fn new(label: impl Into<String>, unit: Unit) -> Self {
        Self {
            label: label.into(),
            cells: [Stat::NotRun; 4],
            unit,
        }
    }

    /// Sets the cell of `target`.
    pub fn set(&mut self, target: Target, stat: Stat) {
        self.cells[target.index()] = stat;
    }

    fn ratio(&self, peer: Target) -> String {
        match (
            self.cells[Target::Outpost.index()],
            self.cells[peer.index()],
        ) {
            (Stat::Num(a), Stat::Num(b)) if b > 0.0 => format!("{:.2}", a / b),
            (Stat::NotRun, _) | (_, Stat::NotRun) => "-".to_owned(),
            (Stat::Failed, _) | (_, Stat::Failed) => "n/a".to_owned(),
            _ => "-".to_owned(),
        }
    }
}

/// Formats a number in `unit`.
fn fmt_num(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Rate => format!("{v:.0}"),
        Unit::Millis if v < 1.0 => format!("{v:.3}"),
        Unit::Millis | Unit::Mib => format!("{v:.2}"),
    }
}

/// Formats a cell.
fn fmt_stat(stat: Stat, unit: Unit) -> String {
    match stat {
        Stat::NotRun => "-".to_owned(),
        Stat::Failed => "n/a".to_owned(),
        Stat::Num(v) => fmt_num(v, unit),
        Stat::Pair(a, b) => format!("{} / {}", fmt_num(a, unit), fmt_num(b, unit)),
    }
}

/// The whole report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Lines printed above the table.
    pub header: Vec<String>,
    /// The table rows.
    pub rows: Vec<Row>,
    /// Lines printed below the table (errors, details).
    pub notes: Vec<String>,
}

impl Report {
    /// Renders the report as markdown.
    pub fn render(&self) -> String {
        let mut s = String::from("# Outpost benchmark\n\n");
        for line in &self.header {
            let _ = writeln!(s, "- {line}");
        }
        s.push('\n');
        s.push_str("| benchmark |");
        for t in Target::ALL {
            let _ = write!(s, " {} |", t.name());
        }
        s.push_str(" outpost/deno | outpost/workerd |\n|---|");
        for _ in 0..Target::ALL.len() + 2 {
            s.push_str("---:|");
        }
        s.push('\n');
        for row in &self.rows {
            let _ = write!(s, "| {} |", row.label);
            for cell in row.cells {
                let _ = write!(s, " {} |", fmt_stat(cell, row.unit));
            }
            let _ = writeln!(
                s,
                " {} | {} |",
                row.ratio(Target::Deno),
                row.ratio(Target::Workerd)
            );
        }
        if !self.notes.is_empty() {
            s.push_str("\nNotes:\n");
            for note in &self.notes {
                let _ = writeln!(s, "- {}", note.replace('\n', "\n  "));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_table() {
        let mut row = Row::new("hello req/s", Unit::Rate);
        row.set(Target::Outpost, Stat::Num(30000.0));
        row.set(Target::Deno, Stat::Num(15000.0));
        row.set(Target::Workerd, Stat::Failed);
        row.set(Target::Nginx, Stat::Num(60000.4));
        let mut cold = Row::new("cold start p50 / p99 ms", Unit::Millis);
        cold.set(Target::Outpost, Stat::Pair(0.5, 12.345));
        let report = Report {
            header: vec!["command: `x`".into()],
            rows: vec![row, cold],
            notes: vec!["workerd: failed\nsecond line".into()],
        };
        let text = report.render();
        assert!(text.contains(
            "| benchmark | outpost | deno | workerd | nginx | outpost/deno | outpost/workerd |"
        ));
        assert!(text.contains("| hello req/s | 30000 | 15000 | n/a | 60000 | 2.00 | n/a |"));
        assert!(text.contains("| cold start p50 / p99 ms | 0.500 / 12.35 | - | - | - | - | - |"));
        assert!(text.contains("- workerd: failed\n  second line"));
    }
}
