//! PNG charts for benchmark results (plotters' bitmap backend).
//!
//! Text needs a font, and plotters' `ab_glyph` backend loads none by itself: the first chart
//! looks for one on the system ([`FONT_ENV`], then common paths, then `fc-match`) and registers
//! it as `sans-serif`. Without one the chart is still written, only without any text (a warning
//! says so once): a missing font never fails a benchmark. No font ships with lorad.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Environment variable naming the font file to use; `none` turns text off.
pub(crate) const FONT_ENV: &str = "LORAD_BENCH_FONT";

/// Chart size in pixels.
const SIZE: (u32, u32) = (1024, 640);

/// The font family charts use (registered by [`font`]).
const FAMILY: &str = "sans-serif";

/// Fonts tried, in order, when [`FONT_ENV`] is unset (Debian/Ubuntu, Arch, Fedora, macOS).
const FONT_PATHS: [&str; 8] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Series colours, by order of first appearance (colour-blind-friendly Okabe–Ito palette).
const COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
];

/// Registers a system font once; returns whether charts can draw text.
fn font() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let candidates: Vec<String> = match std::env::var(FONT_ENV) {
            Ok(v) if v == "none" => vec![],
            Ok(v) => vec![v],
            Err(_) => FONT_PATHS.iter().map(|p| p.to_string()).chain(fc_match()).collect(),
        };
        for path in &candidates {
            let Ok(bytes) = std::fs::read(path) else { continue };
            // plotters keeps fonts for the life of the process; this runs at most once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
        eprintln!(
            "lorad-bench: warning: no usable font found (set {FONT_ENV}=/path/to/font.ttf); \
             PNG charts are drawn without text"
        );
        false
    })
}

/// fontconfig's choice of sans-serif font, if `fc-match` is installed.
fn fc_match() -> Option<String> {
    let out =
        std::process::Command::new("fc-match").args(["-f", "%{file}", "sans"]).output().ok()?;
    let path = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !path.trim().is_empty()).then(|| path.trim().to_string())
}

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Formats an axis tick: round numbers without decimals, others as [`fmt_value`].
fn fmt_tick(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { fmt_value(v) }
}

/// Formats a value compactly for labels (3 significant digits, no exponent for usual sizes).
fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Grouped bar chart: one group of bars per entry of `groups` (a run setting, labelled on the
/// x axis), one bar per `(series, value)` in it; a series is coloured (and named in the legend)
/// the same in every group, and may be missing from some. Each bar is labelled with its value.
pub(crate) fn bar_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    groups: &[(String, Vec<(String, f64)>)],
) -> anyhow::Result<()> {
    draw_bars(path, title, y_label, groups, font())
        .with_context(|| format!("writing {}", path.display()))
}

/// [`bar_chart`] into `<out>/<name>.png`, returned as the Markdown line that shows it (`alt`
/// its alt text); a chart that cannot be drawn is a warning and an empty string, never a
/// failed benchmark.
pub(crate) fn bar_chart_md(
    out: &Path,
    name: &str,
    title: &str,
    y_label: &str,
    groups: &[(String, Vec<(String, f64)>)],
    alt: &str,
) -> String {
    let png = out.join(format!("{name}.png"));
    match std::fs::create_dir_all(out)
        .map_err(anyhow::Error::from)
        .and_then(|()| bar_chart(&png, title, y_label, groups))
    {
        Ok(()) => format!("\n![{alt}]({name}.png)\n"),
        Err(e) => {
            eprintln!("lorad-bench: warning: no chart: {e:#}");
            String::new()
        }
    }
}

/// Line chart: one line (with markers) per `(series, points)`, points as `(x, y)`.
pub(crate) fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    draw_lines(path, title, x_label, y_label, series, font())
        .with_context(|| format!("writing {}", path.display()))
}

/// Series names in order of first appearance.
fn series_names(groups: &[(String, Vec<(String, f64)>)]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for (_, bars) in groups {
        for (s, _) in bars {
            if !names.contains(&s.as_str()) {
                names.push(s);
            }
        }
    }
    names
}

fn draw_bars(
    path: &Path,
    title: &str,
    y_label: &str,
    groups: &[(String, Vec<(String, f64)>)],
    text: bool,
) -> anyhow::Result<()> {
    let names = series_names(groups);
    let y_max = groups
        .iter()
        .flat_map(|(_, b)| b.iter().map(|(_, v)| *v))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    // Headroom for the value labels and the legend (upper right, one row per series).
    let y_max = if y_max > 0.0 { y_max * (1.1 + 0.06 * names.len() as f64) } else { 1.0 };
    let n = groups.len().max(1);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder.caption(title, (FAMILY, 24)).x_label_area_size(40).y_label_area_size(80);
    }
    // x is in thousandths of a group slot (integers: plotters formats f64 axes itself); group
    // `i` is centred on `i * SLOT`, which is also where its name is written.
    const SLOT: i32 = 1000;
    let n = i32::try_from(n).context("too many groups")?;
    let centres: Vec<i32> = (0..n).map(|i| i * SLOT).collect();
    let mut chart = builder
        .build_cartesian_2d((-SLOT / 2..n * SLOT - SLOT / 2).with_key_points(centres), 0.0..y_max)
        .map_err(|e| anyhow!("{e}"))?;
    let group_name = |x: &i32| {
        let i = usize::try_from(x / SLOT).unwrap_or(usize::MAX);
        if x % SLOT == 0 {
            groups.get(i).map(|g| g.0.clone()).unwrap_or_default()
        } else {
            String::new()
        }
    };
    if text {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE.mix(0.0))
            .y_desc(y_label)
            .x_label_formatter(&group_name)
            .y_label_formatter(&|v| fmt_tick(*v))
            .label_style((FAMILY, 16))
            .axis_desc_style((FAMILY, 18))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    } else {
        // The mesh measures its labels even when there are none: draw the axes by hand.
        let (x_lo, x_hi) = (-SLOT / 2, n * SLOT - SLOT / 2);
        let axes = PathElement::new(vec![(x_lo, y_max), (x_lo, 0.0), (x_hi, 0.0)], BLACK);
        chart.plotting_area().draw(&axes).map_err(|e| anyhow!("{e}"))?;
    }

    // Within a group, bars share 80 % of the slot, each with a small gap.
    let width = SLOT * 8 / 10 / i32::try_from(names.len().max(1)).context("too many series")?;
    let gap = width / 20;
    for (k, name) in names.iter().enumerate() {
        let c = color(k);
        let bars: Vec<(i32, f64)> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, (_, b))| {
                let x0 = i as i32 * SLOT - SLOT * 4 / 10 + k as i32 * width;
                b.iter().find(|(s, _)| s == name).map(|(_, v)| (x0, *v))
            })
            .filter(|(_, v)| v.is_finite())
            .collect();
        let drawn = chart
            .draw_series(bars.iter().map(|&(x0, v)| {
                Rectangle::new([(x0 + gap, 0.0), (x0 + width - gap, v)], c.filled())
            }))
            .map_err(|e| anyhow!("{e}"))?;
        if text {
            drawn
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled()));
            let style =
                TextStyle::from((FAMILY, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            chart
                .draw_series(
                    bars.iter().map(|&(x0, v)| {
                        Text::new(fmt_value(v), (x0 + width / 2, v), style.clone())
                    }),
                )
                .map_err(|e| anyhow!("{e}"))?;
        }
    }
    if text && !names.is_empty() {
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Draws the series legend of `chart` at `position`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FAMILY, 16))
        .draw()
        .map_err(|e| anyhow!("{e}"))
}

fn draw_lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    text: bool,
) -> anyhow::Result<()> {
    let points = || {
        series
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let (x_min, x_max) = points()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (x, _)| (lo.min(x), hi.max(x)));
    let (x_min, x_max) = if x_min < x_max {
        (x_min, x_max)
    } else if x_min.is_finite() {
        (x_min - 1.0, x_max + 1.0)
    } else {
        (0.0, 1.0)
    };
    let y_lo = points().map(|p| p.1).fold(0.0_f64, f64::min);
    let y_hi = points().map(|p| p.1).fold(0.0_f64, f64::max);
    let pad = if y_hi > y_lo { (y_hi - y_lo) * 0.1 } else { 1.0 };
    let (y_lo, y_hi) = (if y_lo < 0.0 { y_lo - pad } else { 0.0 }, y_hi + pad);

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder.caption(title, (FAMILY, 24)).x_label_area_size(50).y_label_area_size(80);
    }
    let mut chart =
        builder.build_cartesian_2d(x_min..x_max, y_lo..y_hi).map_err(|e| anyhow!("{e}"))?;
    if text {
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.05))
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|v| fmt_tick(*v))
            .y_label_formatter(&|v| fmt_tick(*v))
            .label_style((FAMILY, 16))
            .axis_desc_style((FAMILY, 18))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    } else {
        // The mesh measures its labels even when there are none: draw the axes by hand.
        let axes = PathElement::new(vec![(x_min, y_hi), (x_min, y_lo), (x_max, y_lo)], BLACK);
        chart.plotting_area().draw(&axes).map_err(|e| anyhow!("{e}"))?;
    }
    for (k, (name, pts)) in series.iter().enumerate() {
        let c = color(k);
        let mut pts: Vec<(f64, f64)> =
            pts.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let drawn = chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?;
        if text {
            drawn.label(name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
            });
        }
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    if text && !series.is_empty() {
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh path under the system temp dir; removed on drop.
    struct TempPng(std::path::PathBuf);

    impl TempPng {
        fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let name = format!("lorad-bench-plot-{tag}-{}-{nanos}.png", std::process::id());
            Self(std::env::temp_dir().join(name))
        }
    }

    impl Drop for TempPng {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Checks the PNG signature and returns the IHDR width and height.
    fn png_size(path: &Path) -> (u32, u32) {
        let bytes = std::fs::read(path).expect("chart written");
        assert!(bytes.len() > 24, "PNG too short: {} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR", "first chunk is IHDR");
        let be =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        (be(16), be(20))
    }

    fn groups() -> Vec<(String, Vec<(String, f64)>)> {
        let g = |name: &str, bars: &[(&str, f64)]| {
            (name.to_string(), bars.iter().map(|(s, v)| (s.to_string(), *v)).collect())
        };
        vec![
            g("best", &[("a", 120.0), ("b", 110.0), ("c", 8.5)]),
            g("run 1", &[("a", 118.0), ("b", 104.0)]),
        ]
    }

    #[test]
    fn bar_chart_writes_png() {
        let out = TempPng::new("bar");
        bar_chart(&out.0, "decode: tokens/s", "tokens/s", &groups()).unwrap();
        let (w, h) = png_size(&out.0);
        assert!(w > 0 && h > 0, "{w}x{h}");
        assert_eq!((w, h), SIZE);
    }

    #[test]
    fn line_chart_writes_png() {
        let out = TempPng::new("line");
        let series = vec![
            ("p50".to_string(), vec![(1.0, 2.0), (8.0, 3.5), (64.0, 9.0)]),
            ("p99".to_string(), vec![(1.0, 4.0), (8.0, 7.0), (64.0, 20.0)]),
        ];
        line_chart(&out.0, "latency vs size", "size", "ms", &series).unwrap();
        let (w, h) = png_size(&out.0);
        assert!(w > 0 && h > 0, "{w}x{h}");
    }

    #[test]
    fn charts_without_text_and_degenerate_data() {
        let out = TempPng::new("notext");
        draw_bars(&out.0, "t", "y", &groups(), false).unwrap();
        assert_eq!(png_size(&out.0), SIZE);
        draw_bars(&out.0, "t", "y", &[], false).unwrap();
        assert_eq!(png_size(&out.0), SIZE);
        draw_lines(&out.0, "t", "x", "y", &[("one".into(), vec![(1.0, 1.0)])], false).unwrap();
        assert_eq!(png_size(&out.0), SIZE);
        draw_lines(&out.0, "t", "x", "y", &[], false).unwrap();
        assert_eq!(png_size(&out.0), SIZE);
    }
}
