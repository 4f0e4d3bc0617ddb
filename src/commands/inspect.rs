use std::io::Write;

use attnframes_app as app;

use crate::cli::InspectArgs;

pub fn run(a: &InspectArgs) -> app::Result<()> {
    let summaries = app::inspect(&app::InspectOptions {
        files: a.files.clone(),
        attn_key: a.attn_key.clone(),
        layout: a.layout.clone(),
    })?;
    let text = if a.json {
        serde_json::to_string_pretty(&summaries).expect("summary serialises") + "\n"
    } else {
        summaries.iter().map(describe).collect()
    };
    // A closed pipe (`inspect … | head`) is not an error worth a message.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

fn describe(s: &app::TensorSummary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let key = match (&s.key, s.stacked) {
        (Some(k), Some(n)) => format!(" ('{k}': {n} arrays stacked as layers)"),
        (None, Some(n)) => format!(" ({n} arrays stacked as layers)"),
        (Some(k), None) => format!(" (array '{k}')"),
        (None, None) => String::new(),
    };
    let dims: Vec<String> = s.shape.iter().map(|d| d.to_string()).collect();
    let order = if s.fortran_order {
        " Fortran order"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{}\n  format     {}{key}\n  dtype      {}",
        s.path, s.format, s.dtype
    );
    let _ = writeln!(out, "  shape      ({}){order}", dims.join(", "));
    let _ = match &s.layout {
        Some(l) => writeln!(out, "  layout     {l}"),
        None => writeln!(
            out,
            "  layout     unknown: {}",
            s.layout_note.as_deref().unwrap_or("")
        ),
    };
    if let Some(b) = s.bytes_on_disk {
        let _ = writeln!(out, "  on disk    {b} bytes");
    }
    if let (Some(nan), Some(inf)) = (s.nan, s.inf) {
        let _ = writeln!(out, "  NaN / Inf  {nan} / {inf}");
    }
    if !s.row_sums.is_empty() {
        let lo = s
            .row_sums
            .iter()
            .map(|h| h.min)
            .fold(f64::INFINITY, f64::min);
        let hi = s
            .row_sums
            .iter()
            .map(|h| h.max)
            .fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            out,
            "  row sums   {lo:.6} … {hi:.6} over every head (1 = rows are probabilities)"
        );
        let _ = writeln!(out, "  per (layer, head) row-sum range:");
        for h in &s.row_sums {
            let _ = writeln!(
                out,
                "    layer {:>3} head {:>3}  {:.6} … {:.6}",
                h.layer, h.head, h.min, h.max
            );
        }
    }
    out
}
