//! What each scenario hands back: a JSON object for the machine-readable report and rows for
//! the table on stdout, each row with its goal and verdict.

use serde_json::Value;

/// How a figure compares with its goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Miss,
    /// A figure without a goal.
    Info,
}

impl Verdict {
    pub fn of(pass: bool) -> Verdict {
        if pass {
            Verdict::Pass
        } else {
            Verdict::Miss
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Miss => "MISS",
            Verdict::Info => "-",
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub figure: String,
    pub akvfs: String,
    pub baseline: String,
    pub ratio: String,
    pub goal: String,
    pub verdict: Verdict,
}

impl Row {
    pub fn new(figure: impl Into<String>, akvfs: impl Into<String>) -> Row {
        Row {
            figure: figure.into(),
            akvfs: akvfs.into(),
            baseline: "-".into(),
            ratio: "-".into(),
            goal: "-".into(),
            verdict: Verdict::Info,
        }
    }

    pub fn baseline(mut self, b: impl Into<String>) -> Row {
        self.baseline = b.into();
        self
    }

    pub fn ratio(mut self, r: f64) -> Row {
        self.ratio = format!("{r:.3}x");
        self
    }

    pub fn goal(mut self, goal: impl Into<String>, pass: bool) -> Row {
        self.goal = goal.into();
        self.verdict = Verdict::of(pass);
        self
    }
}

/// The result of one scenario.
pub struct Section {
    pub key: &'static str,
    pub json: Value,
    pub rows: Vec<Row>,
}

/// Prints the rows as a Markdown table.
pub fn print_table(rows: &[Row]) {
    let head = ["figure", "akvfs", "baseline", "ratio", "goal", "verdict"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.figure.clone(),
                r.akvfs.clone(),
                r.baseline.clone(),
                r.ratio.clone(),
                r.goal.clone(),
                r.verdict.word().to_string(),
            ]
        })
        .collect();
    let mut width = head.map(|h| h.len());
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c.iter()) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        let parts: Vec<String> = c
            .iter()
            .zip(width.iter())
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(&head.map(String::from));
    println!(
        "|{}|",
        width
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for c in &cells {
        line(c);
    }
}
