//! `ode report`: one self-contained HTML file (inline SVG plots, no scripts, no network) for a
//! training run directory.

mod plot;
mod run;

use clap::Args;
use std::path::PathBuf;

pub use run::write_run_report;

/// `ode report RUN_DIR [--out FILE]`.
#[derive(Args)]
pub struct ReportArgs {
    /// The run directory `ode train --out` wrote (metrics.jsonl, summary.json, config.toml).
    pub run_dir: PathBuf,
    /// Where to write the report (default RUN_DIR/report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Writes the report and prints where.
pub fn run(args: &ReportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let out = args.out.clone().unwrap_or_else(|| args.run_dir.join("report.html"));
    write_run_report(&args.run_dir, &out)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `text` with HTML's special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A whole page: title, a small stylesheet, the body.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1400px}}\
         figure.plot{{display:inline-block;margin:0 1em 1em 0}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}\
         pre{{background:#f6f6f6;padding:1em}}</style></head>\n<body><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = escape(title)
    )
}
