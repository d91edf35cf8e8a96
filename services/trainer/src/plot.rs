//! Minimal PNG plots with no font dependency: points, axes and a reference line.

use anyhow::Context;

const W: usize = 640;
const H: usize = 480;
const MARGIN: usize = 40;

/// A scatter of (x, y) with axes; `diagonal` draws y = x, otherwise the line y = 0.
pub fn scatter(points: &[(f64, f64)], diagonal: bool) -> anyhow::Result<Vec<u8>> {
    let finite: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = finite.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), (x, y)| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)),
    );
    if diagonal {
        (x0, y0) = (x0.min(y0), x0.min(y0));
        (x1, y1) = (x1.max(y1), x1.max(y1));
    } else {
        (y0, y1) = (y0.min(0.0), y1.max(0.0));
    }
    if x1.is_nan() || x0.is_nan() || x1 <= x0 {
        (x0, x1) = (0.0, 1.0);
    }
    if y1.is_nan() || y0.is_nan() || y1 <= y0 {
        (y0, y1) = (0.0, 1.0);
    }
    let mut img = vec![255u8; W * H * 3];
    let px = |x: f64| MARGIN as f64 + (x - x0) / (x1 - x0) * (W - 2 * MARGIN) as f64;
    let py = |y: f64| (H - MARGIN) as f64 - (y - y0) / (y1 - y0) * (H - 2 * MARGIN) as f64;
    let put = |img: &mut Vec<u8>, x: f64, y: f64, rgb: [u8; 3]| {
        let (xi, yi) = (x.round() as isize, y.round() as isize);
        if xi >= 0 && yi >= 0 && (xi as usize) < W && (yi as usize) < H {
            let i = (yi as usize * W + xi as usize) * 3;
            img[i..i + 3].copy_from_slice(&rgb);
        }
    };
    for i in MARGIN..W - MARGIN {
        put(&mut img, i as f64, (H - MARGIN) as f64, [0, 0, 0]);
    }
    for j in MARGIN..H - MARGIN {
        put(&mut img, MARGIN as f64, j as f64, [0, 0, 0]);
    }
    for k in 0..=1000 {
        let x = x0 + (x1 - x0) * k as f64 / 1000.0;
        let y = if diagonal { x } else { 0.0 };
        put(&mut img, px(x), py(y), [220, 40, 40]);
    }
    for (x, y) in &finite {
        put(&mut img, px(*x), py(*y), [30, 80, 200]);
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, W as u32, H as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().context("PNG header")?;
        w.write_image_data(&img).context("PNG data")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_a_png() {
        let png = super::scatter(&[(1.0, 2.0), (3.0, 2.5), (f64::NAN, 1.0)], true).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
