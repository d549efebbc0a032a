//! Plot: the picture on-call pastes into the incident channel — per backend, sockets against the
//! driver's cumulative count with the fitted line and the limit, and sockets against time with the
//! projected crossing. Written as SVG with plotters.

use crate::units::human_duration;
use crate::verdict::{BackendReport, Report};
use plotters::prelude::*;

const ROW_H: u32 = 320;
const WIDTH: u32 = 1100;
/// Backends drawn, worst first.
const MAX_ROWS: usize = 6;

/// Renders the report's backends (worst first, at most six) as one SVG document.
pub fn svg(r: &Report) -> Result<String, String> {
    let rows: Vec<&BackendReport> = r.backends.iter().filter(|b| b.curve.len() >= 2).take(MAX_ROWS).collect();
    let mut out = String::new();
    {
        let h = ROW_H * rows.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut out, (WIDTH, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        if rows.is_empty() {
            root.draw(&Text::new("no backend with a socket curve to plot", (20, 40), ("sans-serif", 18)))
                .map_err(|e| e.to_string())?;
        }
        let areas = root.split_evenly((rows.len().max(1), 2));
        for (i, b) in rows.iter().enumerate() {
            draw_vs_events(&areas[2 * i], b)?;
            draw_vs_time(&areas[2 * i + 1], b)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn title(b: &BackendReport) -> String {
    match &b.driver {
        Some(d) => format!(
            "{} — {}: {:.2} socket per {}",
            b.name(),
            b.verdict.name().to_uppercase(),
            d.per_event,
            d.kind.name()
        ),
        None => format!("{} — {}", b.name(), b.verdict.name().to_uppercase()),
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn clock(t: i64) -> String {
    crate::units::utc(t, "%Y-%m-%d %H:%M:%S UTC")
}

fn es(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn draw_vs_events(area: &Area<'_>, b: &BackendReport) -> Result<(), String> {
    let xs: Vec<f64> = b.curve.iter().map(|p| p.events).collect();
    let ys: Vec<f64> = b.curve.iter().map(|p| p.sockets).collect();
    let mut xmax = xs.iter().copied().fold(1.0, f64::max);
    // A floor keeps a flat curve looking flat (1 ↔ 2 sockets is not a cliff).
    let mut ymax = ys.iter().copied().fold(10.0, f64::max);
    // Show the limit and where the fitted line crosses it, when that is not absurdly far away.
    let crossing = match (&b.driver, b.limit) {
        (Some(d), Some(l)) if d.per_event > 0.0 => Some((l as f64 - d.intercept) / d.per_event),
        _ => None,
    };
    if let (Some(x), Some(l)) = (crossing, b.limit) {
        if x <= 20.0 * xmax {
            xmax = xmax.max(x * 1.05);
            ymax = ymax.max(l as f64 * 1.05);
        }
    }
    let xlabel = match &b.driver {
        Some(d) => format!("{} (cumulative)", d.kind.name()),
        None => "probes (cumulative)".to_string(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title(b), ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax * 1.05)
        .map_err(es)?;
    chart
        .configure_mesh()
        .x_desc(xlabel)
        .y_desc(format!("sockets ({})", b.sockets_source.name()))
        .draw()
        .map_err(es)?;
    chart
        .draw_series(LineSeries::new(xs.iter().copied().zip(ys.iter().copied()), BLUE.stroke_width(2)))
        .map_err(es)?
        .label("sockets")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    if let Some(d) = &b.driver {
        let line = [(0.0, d.intercept), (xmax, d.intercept + d.per_event * xmax)];
        chart
            .draw_series(LineSeries::new(line, RED.stroke_width(1)))
            .map_err(es)?
            .label(format!("fit: {:.2} per event", d.per_event))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    }
    if let Some(l) = b.limit.map(|l| l as f64).filter(|l| *l <= ymax * 1.05) {
        chart
            .draw_series(LineSeries::new([(0.0, l), (xmax, l)], BLACK.mix(0.6)))
            .map_err(es)?
            .label(format!("limit {l:.0}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.6)));
        if let Some(x) = crossing.filter(|x| *x <= xmax) {
            chart.draw_series(std::iter::once(Circle::new((x, l), 5, RED.filled()))).map_err(es)?;
        }
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK.mix(0.3)).draw().map_err(es)?;
    Ok(())
}

fn draw_vs_time(area: &Area<'_>, b: &BackendReport) -> Result<(), String> {
    let t0 = b.curve[0].ts;
    let pts: Vec<(f64, f64)> = b.curve.iter().map(|p| ((p.ts - t0) as f64 / 1e9, p.sockets)).collect();
    let mut xmax = pts.iter().map(|p| p.0).fold(1.0, f64::max);
    let mut ymax = pts.iter().map(|p| p.1).fold(10.0, f64::max);
    let now_x = xmax;
    let now_y = pts.last().map_or(0.0, |p| p.1);
    let crossing = match (b.exhaustion_eta_s, b.limit) {
        (Some(e), Some(l)) if e > 0.0 && now_x + e <= 20.0 * xmax => Some((now_x + e, l as f64)),
        _ => None,
    };
    if let Some((x, l)) = crossing {
        xmax = xmax.max(x * 1.05);
        ymax = ymax.max(l * 1.05);
    }
    let caption = match (b.exhaustion_eta_s, b.limit) {
        (Some(e), Some(l)) => format!("sockets over time — limit {l} reached in {}", human_duration(e)),
        _ => "sockets over time".to_string(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax * 1.05)
        .map_err(es)?;
    chart
        .configure_mesh()
        .x_desc(format!("seconds since {}", clock(t0)))
        .y_desc(format!("sockets ({})", b.sockets_source.name()))
        .draw()
        .map_err(es)?;
    chart
        .draw_series(LineSeries::new(pts.iter().copied(), BLUE.stroke_width(2)))
        .map_err(es)?
        .label("sockets")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    if let Some((x, l)) = crossing {
        chart
            .draw_series(LineSeries::new([(now_x, now_y), (x, l)], RED.stroke_width(1)))
            .map_err(es)?
            .label("projection")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        chart
            .draw_series(LineSeries::new([(0.0, l), (xmax, l)], BLACK.mix(0.6)))
            .map_err(es)?
            .label(format!("limit {l:.0}"));
        chart.draw_series(std::iter::once(Circle::new((x, l), 5, RED.filled()))).map_err(es)?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK.mix(0.3)).draw().map_err(es)?;
    Ok(())
}
