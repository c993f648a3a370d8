// SPDX-License-Identifier: MIT OR Apache-2.0
//! The evaluation: every method on the clip, the table, the per-frame CSV and the picture.

use std::fmt::Write as _;
use std::time::Instant;

use rayon::prelude::*;

use crate::methods::{ElementSettings, blend, run_ours};
use crate::metrics::{SSIM_WIN, psnr, ssim};
use crate::options::{Kind, Options};
use crate::picture::{side_by_side, worst_window, write_png};
use crate::video::{decode, read_raw_rgb};

pub(crate) struct Row {
    pub(crate) label: String,
    /// (frame index, PSNR, SSIM) per rebuilt frame.
    pub(crate) per_frame: Vec<(usize, f64, f64)>,
    pub(crate) note: Option<String>,
}

pub(crate) fn evaluate(o: &Options) -> Result<(), String> {
    let t0 = Instant::now();
    let clip = decode(&o.clip, o.convert)?;
    let (w, h, n) = (clip.width, clip.height, clip.frames.len());
    if w < SSIM_WIN || h < SSIM_WIN {
        return Err(format!("{w}x{h} is too small for the 11x11 SSIM window"));
    }
    if n < 3 {
        return Err(format!(
            "{}: {n} frames, at least 3 needed",
            o.clip.display()
        ));
    }
    // Rebuilt frames 1, 3, ..., 2m - 1; even frames 0, 2, ..., 2m.
    let m_all = (n - 1) / 2;
    let m = o.frames.map_or(m_all, |f| f.min(m_all));
    let even: Vec<Vec<u8>> = (0..=m_all).map(|i| clip.frames[2 * i].clone()).collect();
    let targets: Vec<usize> = (0..m).map(|j| 2 * j + 1).collect();
    println!(
        "clip: {}: {n} frames, {w}x{h}, {} fps; RGB: {} ({:.1} s)",
        o.clip.display(),
        clip.fps,
        clip.rgb_from,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "kept: {} even frames (0..{}), rebuilt: {m} odd frames (1..{}){}",
        m_all + 1,
        2 * m_all,
        2 * m - 1,
        if m < m_all {
            format!(" of {m_all} (--frames)")
        } else {
            String::new()
        }
    );
    if let Some(path) = &o.write_even {
        let bytes: Vec<u8> = even.concat();
        std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        println!(
            "wrote {} even frames as raw rgb24 {w}x{h} to {} (rate {}/{})",
            even.len(),
            path.display(),
            clip.fps.numer(),
            clip.fps.denom() * 2
        );
    }

    // The frame for the picture: given, or the one blend does worst on.
    let crop_frame = match (&o.png, o.crop_frame) {
        (None, _) => None,
        (Some(_), Some(k)) if k < 2 * m => Some(k),
        (Some(_), Some(k)) => {
            return Err(format!(
                "--crop-frame {k} is not among the rebuilt frames 1..{}",
                2 * m - 1
            ));
        }
        (Some(_), None) => targets
            .par_iter()
            .map(|&k| {
                let b = blend(&clip.frames[k - 1], &clip.frames[k + 1]);
                (psnr(&b, &clip.frames[k]), k)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| k),
    };
    let mut pictures: Vec<(String, Vec<u8>)> = Vec::new();

    let mut rows = Vec::new();
    for method in &o.methods {
        let t = Instant::now();
        let mut note = None;
        // rebuilt(k) for the frames the method has.
        let owned: Vec<Vec<u8>>;
        let get: Box<dyn Fn(usize) -> Option<Vec<u8>> + Sync> = match &method.kind {
            Kind::Dup => Box::new(|k: usize| Some(clip.frames[k - 1].clone())),
            Kind::Blend => {
                Box::new(|k: usize| Some(blend(&clip.frames[k - 1], &clip.frames[k + 1])))
            }
            Kind::Ours => {
                let settings = ElementSettings {
                    model: o.model.as_deref(),
                    backend: &o.backend,
                    precision: &o.precision,
                    device_id: o.device_id,
                };
                // Rebuilt frame 2j + 1 uses even frames j - 1 .. j + 2.
                let run = run_ours(&even[..(m + 2).min(m_all + 1)], w, h, clip.fps, &settings)?;
                note = Some(format!("originals bit-exact; {}", run.summary));
                owned = run.rebuilt;
                Box::new(|k: usize| owned.get(k / 2).cloned())
            }
            Kind::File(path) => {
                let frames = if path.extension().is_some_and(|e| e == "rgb") {
                    read_raw_rgb(path, w, h)?
                } else {
                    let v = decode(path, o.convert)?;
                    if (v.width, v.height) != (w, h) {
                        return Err(format!(
                            "{}: {}x{}, the clip is {w}x{h}",
                            path.display(),
                            v.width,
                            v.height
                        ));
                    }
                    v.frames
                };
                let orig = (0..frames.len().min(2 * m_all + 1))
                    .step_by(2)
                    .map(|k| max_abs_diff(&frames[k], &clip.frames[k]))
                    .max()
                    .unwrap_or(0);
                note = Some(format!(
                    "{} frames; its even frames differ from the originals by at most {orig}",
                    frames.len()
                ));
                owned = frames;
                Box::new(|k: usize| owned.get(k).cloned())
            }
        };
        let per_frame: Vec<(usize, f64, f64)> = targets
            .par_iter()
            .filter_map(|&k| {
                get(k).map(|r| {
                    let truth = &clip.frames[k];
                    (k, psnr(&r, truth), ssim(&r, truth, w, h))
                })
            })
            .collect();
        if per_frame.len() < targets.len() {
            eprintln!(
                "note: {}: {} of the {} rebuilt frames are there; its mean is over those \
                 (--frames {} gives every row the same frames)",
                method.label,
                per_frame.len(),
                targets.len(),
                per_frame.len()
            );
        }
        if let Some(k) = crop_frame
            && !matches!(method.kind, Kind::Dup | Kind::Blend)
            && let Some(f) = get(k)
        {
            pictures.push((method.label.clone(), f));
        }
        eprintln!(
            "{}: {:.1} s{}",
            method.label,
            t.elapsed().as_secs_f64(),
            note.as_deref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        );
        rows.push(Row {
            label: method.label.clone(),
            per_frame,
            note,
        });
    }

    println!();
    println!(
        "{:<16} {:>6} {:>10} {:>8}",
        "method", "frames", "PSNR (dB)", "SSIM"
    );
    for r in &rows {
        let k = r.per_frame.len().max(1) as f64;
        let p: f64 = r.per_frame.iter().map(|v| v.1).sum::<f64>() / k;
        let s: f64 = r.per_frame.iter().map(|v| v.2).sum::<f64>() / k;
        println!(
            "{:<16} {:>6} {:>10.3} {:>8.4}",
            r.label,
            r.per_frame.len(),
            p,
            s
        );
    }
    for r in &rows {
        if let Some(n) = &r.note {
            println!("  {}: {n}", r.label);
        }
    }

    if let Some(path) = &o.per_frame {
        let mut csv = String::from("method,frame,psnr,ssim\n");
        for r in &rows {
            for (k, p, s) in &r.per_frame {
                let _ = writeln!(csv, "{},{k},{p:.4},{s:.6}", r.label);
            }
        }
        std::fs::write(path, csv).map_err(|e| format!("{}: {e}", path.display()))?;
    }

    if let (Some(path), Some(k)) = (&o.png, crop_frame) {
        let truth = &clip.frames[k];
        let blended = blend(&clip.frames[k - 1], &clip.frames[k + 1]);
        let rect = match o.crop {
            Some(r) => r,
            None => {
                let (cw, ch) = (o.crop_size.0.min(w), o.crop_size.1.min(h));
                worst_window(&blended, truth, w, h, cw, ch)
            }
        };
        if rect.w == 0 || rect.h == 0 || rect.x + rect.w > w || rect.y + rect.h > h {
            return Err(format!("--crop {rect:?} is not inside the {w}x{h} frame"));
        }
        let mut panels: Vec<(&str, &[u8])> = vec![("truth", truth), ("blend", &blended)];
        for (label, f) in &pictures {
            panels.push((label, f));
        }
        let frames: Vec<&[u8]> = panels.iter().map(|p| p.1).collect();
        let (img, total) = side_by_side(&frames, w, rect);
        write_png(path, &img, total, rect.h)?;
        let names: Vec<&str> = panels.iter().map(|p| p.0).collect();
        println!(
            "picture: {}: frame {k}, crop x={} y={} {}x{}, left to right: {}",
            path.display(),
            rect.x,
            rect.y,
            rect.w,
            rect.h,
            names.join(" | ")
        );
    }
    Ok(())
}

pub(crate) fn max_abs_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x.abs_diff(y))
        .max()
        .unwrap_or(0)
}
