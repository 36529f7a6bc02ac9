//! Benchmark figures as rows of one table. Each bench ends by printing its headline figures
//! with when and on what they were measured (day, cores, CPU, build profile), in the columns
//! of `docs/dev/benchmarks.md`, so a figure copied into the docs keeps its provenance.

/// The headline figures of one bench run.
pub struct Figures {
    bench: &'static str,
    rows: Vec<(String, String)>,
}

impl Figures {
    pub fn new(bench: &'static str) -> Self {
        Self {
            bench,
            rows: Vec::new(),
        }
    }

    /// One figure: what was measured, and its value with its unit.
    pub fn add(&mut self, figure: impl Into<String>, value: impl Into<String>) {
        self.rows.push((figure.into(), value.into()));
    }

    /// The rows, as `docs/dev/benchmarks.md` has them (a header first).
    pub fn table(&self) -> String {
        let on = measured_on();
        let mut out = String::from("| bench | figure | value | measured |\n|---|---|---|---|\n");
        for (figure, value) in &self.rows {
            out.push_str(&format!(
                "| `{}` | {} | {} | {on} |\n",
                self.bench,
                figure.replace('|', "\\|"),
                value.replace('|', "\\|")
            ));
        }
        out
    }

    /// Print [`Figures::table`] after a blank line.
    pub fn print(&self) {
        println!("\n{}", self.table());
    }
}

/// The day, the machine and the build: `2026-12-07, 2 cores (AMD EPYC 7B13), dev build`.
fn measured_on() -> String {
    let day = chrono::Utc::now().format("%Y-%m-%d");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let profile = if cfg!(debug_assertions) {
        "dev build"
    } else {
        "release build"
    };
    format!("{day}, {cores} cores ({cpu}), {profile}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_print_as_rows_that_say_when_and_on_what() {
        let mut f = Figures::new("idle_rss");
        f.add("idle RSS, 6 services", "19.4 MiB");
        let t = f.table();
        let row = t.lines().nth(2).unwrap();
        assert!(
            row.starts_with("| `idle_rss` | idle RSS, 6 services | 19.4 MiB | 20"),
            "{row}"
        );
        assert!(row.contains(" cores ("), "{row}");
        assert!(row.ends_with(" build |"), "{row}");
    }
}
