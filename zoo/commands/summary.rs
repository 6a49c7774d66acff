//! `zoo summary`: the table, CSV and JSON of [`crate::nn::summary`]'s analysis, and the
//! accuracy-against-cost chart.
pub use crate::nn::summary::*;
use anyhow::Result;

fn human(n: i64) -> String {
    let n = n as f64;
    match n.abs() {
        x if x >= 1e9 => format!("{:.2}G", n / 1e9),
        x if x >= 1e6 => format!("{:.2}M", n / 1e6),
        x if x >= 1e3 => format!("{:.1}K", n / 1e3),
        _ => format!("{n}"),
    }
}

fn bytes(n: i64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

/// Output formats of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Renders the per-layer table (rows nested deeper than `depth` hidden) and the totals.
pub fn render(s: &Summary, depth: usize, format: Format) -> Result<String> {
    let rows: Vec<&Row> = s.rows.iter().filter(|r| r.depth <= depth).collect();
    let rf = |f: &Field| f.size.map_or("global".to_string(), |r| r.to_string());
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(s)? + "\n",
        Format::Csv => {
            let mut out =
                String::from("name,type,depth,output_shape,params,trainable,macs,activation_bytes,rf,jump,start\n");
            for r in rows {
                let shape = r.output_shape.iter().map(i64::to_string).collect::<Vec<_>>().join("x");
                out += &format!(
                    "{},{},{},{},{},{},{},{},{},{},{}\n",
                    r.name,
                    r.kind,
                    r.depth,
                    shape,
                    r.params,
                    r.trainable,
                    r.macs,
                    r.activation_bytes,
                    rf(&r.field),
                    r.field.jump,
                    r.field.start
                );
            }
            out
        }
        Format::Table => {
            let mut out = format!(
                "{:<34} {:<18} {:<20} {:>10} {:>10} {:>10} {:>7} {:>5} {:>6}\n",
                "layer", "type", "output", "params", "MACs", "act mem", "RF", "jump", "start"
            );
            for r in rows {
                let name = format!("{}{}", "  ".repeat(r.depth), r.name);
                let shape = format!("{:?}", r.output_shape);
                let frozen = if r.params != r.trainable { "*" } else { "" };
                out += &format!(
                    "{:<34} {:<18} {:<20} {:>9}{:1} {:>10} {:>10} {:>7} {:>5} {:>6}\n",
                    name,
                    r.kind,
                    shape,
                    human(r.params),
                    frozen,
                    human(r.macs),
                    bytes(r.activation_bytes),
                    rf(&r.field),
                    r.field.jump,
                    r.field.start
                );
            }
            let pct = |a: i64, b: i64| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
            out += &format!("\n{} at input {:?}\n", s.model, s.input);
            out += &format!("parameters:      {} ({} trainable)\n", s.params, s.trainable);
            out +=
                &format!("multiply-adds:   {} ({:.3} G per image)\n", s.macs, s.macs as f64 / 1e9 / s.input[0] as f64);
            out += &format!("parameter mem:   {}\n", bytes(s.param_bytes));
            out += &format!(
                "activation mem:  {} (forward outputs of every layer, batch {})\n",
                bytes(s.activation_bytes),
                s.input[0]
            );
            out += &format!(
                "conv / fc:       {:.1}% / {:.1}% of multiply-adds, {:.1}% / {:.1}% of parameters\n",
                pct(s.conv_macs, s.macs),
                pct(s.fc_macs, s.macs),
                pct(s.conv_params, s.params),
                pct(s.fc_params, s.params)
            );
            if let Some(f) = s.last_stage_field {
                out += &format!("receptive field: {f} pixels at the last stage\n");
            }
            out
        }
    })
}

/// The comparison table.
pub fn render_compare(rows: &[CompareRow]) -> String {
    let mut out = format!("{:<22} {:>10} {:>10} {:>7} {:>8}\n", "model", "params", "GMACs", "top-1", "RF");
    for r in rows {
        out += &format!(
            "{:<22} {:>9.2}M {:>10.3} {:>7} {:>8}\n",
            r.model,
            r.params as f64 / 1e6,
            r.macs as f64 / 1e9,
            r.top1.map_or("-".into(), |t| format!("{t:.2}")),
            r.field.map_or("global".into(), |f| f.to_string())
        );
    }
    out
}

/// The comparison as CSV (`model,params,macs,top1,receptive_field`; empty where unknown) or as
/// a JSON array of [`CompareRow`]s.
pub fn render_compare_as(rows: &[CompareRow], format: Format) -> Result<String> {
    Ok(match format {
        Format::Table => render_compare(rows),
        Format::Json => serde_json::to_string_pretty(rows)? + "\n",
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["model", "params", "macs", "top1", "receptive_field"])?;
            for r in rows {
                let opt = |v: Option<String>| v.unwrap_or_default();
                w.write_record([
                    r.model.clone(),
                    r.params.to_string(),
                    r.macs.to_string(),
                    opt(r.top1.map(|t| t.to_string())),
                    opt(r.field.map(|f| f.to_string())),
                ])?;
            }
            String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?
        }
    })
}

/// Top-1 accuracy against multiply-adds, the chart that shows the lineage's trade-offs. Models
/// without a published top-1 are named in a footnote and returned.
pub fn plot(rows: &[CompareRow], path: &std::path::Path) -> Result<Vec<String>> {
    let points: Vec<crate::plot::Point> = rows
        .iter()
        .filter_map(|r| r.top1.map(|t| crate::plot::Point { label: r.model.clone(), x: r.macs as f64 / 1e9, y: t }))
        .collect();
    let left_out: Vec<String> = rows.iter().filter(|r| r.top1.is_none()).map(|r| r.model.clone()).collect();
    let footnote = if left_out.is_empty() {
        String::new()
    } else {
        format!("not shown, no published ImageNet top-1: {}", left_out.join(", "))
    };
    crate::plot::scatter(
        path,
        "ImageNet top-1 against cost",
        "multiply-adds per image (G, log scale)",
        "top-1 (%)",
        &points,
        &footnote,
    )?;
    Ok(left_out)
}
