//! `ode report`: one self-contained HTML file (inline SVG plots, no scripts, no network) for a
//! training run directory.

mod plot;
mod run;
mod study;

use crate::out::outln;
use crate::storage::StorageUrl;
use clap::Args;
use std::path::PathBuf;

pub use run::write_run_report;
pub use study::write_study_report;

/// `ode report RUN_DIR [--out FILE]` or `ode report --study NAME [--storage URL] [--out FILE]`.
#[derive(Args)]
pub struct ReportArgs {
    /// The run directory `ode train --out` wrote (metrics.jsonl, summary.json, config.toml).
    #[arg(required_unless_present = "study", conflicts_with = "study")]
    pub run_dir: Option<PathBuf>,
    /// A study to report on instead of a run (its trials are read from --storage).
    #[arg(long)]
    pub study: Option<String>,
    /// Study store of --study: sqlite:PATH or postgresql://USER:PASSWORD@HOST/DB.
    #[arg(long, default_value = "sqlite:ode-studies.db", requires = "study")]
    pub storage: StorageUrl,
    /// Where to write the report (default RUN_DIR/report.html, or STUDY-report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Writes the report and prints where.
pub fn run(args: &ReportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let out = match (&args.run_dir, &args.study) {
        (Some(dir), _) => {
            let out = args.out.clone().unwrap_or_else(|| dir.join("report.html"));
            write_run_report(dir, &out)?;
            out
        }
        (None, Some(name)) => {
            let trials = crate::search::load_trials(&args.storage, name)?;
            let out = args.out.clone().unwrap_or_else(|| default_study_report(name));
            write_study_report(name, &args.storage.to_string(), &trials, &out)?;
            out
        }
        (None, None) => return Err("give a run directory or --study NAME".into()),
    };
    outln!("wrote {}", out.display());
    Ok(())
}

/// `NAME-report.html` in the working directory, with characters other than letters, digits,
/// `-`, `_` and `.` in the study name replaced by `_`.
pub fn default_study_report(study: &str) -> PathBuf {
    let safe: String = study
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from(format!("{safe}-report.html"))
}

/// `text` with HTML's special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A highlighted paragraph with `warning` (e.g. that a baseline beats the best model), or
/// nothing without one.
fn warning(text: Option<String>) -> String {
    text.map(|w| format!("<p class=\"warning\"><strong>Warning:</strong> {}</p>\n", escape(&w)))
        .unwrap_or_default()
}

/// A whole page: title, a small stylesheet, the body.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1400px}}\
         figure.plot{{display:inline-block;margin:0 1em 1em 0;vertical-align:top}}figure.plot figcaption{{max-width:640px}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}\
         pre{{background:#f6f6f6;padding:1em}}p.warning{{background:#fff3cd;border:1px solid #d9a400;padding:0.5em 1em}}</style></head>\n<body><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = escape(title)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_study_report_is_named_after_the_study_in_safe_characters() {
        let p = super::default_study_report("lr sweep/v2");
        assert_eq!(p, std::path::PathBuf::from("lr_sweep_v2-report.html"));
    }
}
