// SPDX-License-Identifier: MIT OR Apache-2.0
//! The end of a run: a sentence for people, or one JSON object (`--json`).

use serde_json::json;

/// What a run did.
#[derive(Debug)]
pub(crate) struct Summary {
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) frames_in: u64,
    pub(crate) frames_out: u64,
    pub(crate) seconds: f64,
    pub(crate) backend: String,
    pub(crate) model: String,
    /// `None` when the element ran to a `framerate` instead.
    pub(crate) factor: Option<u32>,
    /// The output frame rate, as `N/D`.
    pub(crate) rate: String,
    pub(crate) encoder: String,
    pub(crate) output_bytes: u64,
    pub(crate) output_seconds: Option<f64>,
    pub(crate) audio_streams: u64,
    pub(crate) subtitle_streams: u64,
    /// `Some(signal name)` when a stop was asked for.
    pub(crate) stopped_by: Option<String>,
    pub(crate) notes: Vec<String>,
}

impl Summary {
    pub(crate) fn fps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.frames_out as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub(crate) fn json(&self) -> String {
        json!({
            "input": self.input,
            "output": self.output,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "seconds": round3(self.seconds),
            "fps": round3(self.fps()),
            "backend": self.backend,
            "model": self.model,
            "factor": self.factor,
            "output_framerate": self.rate,
            "encoder": self.encoder,
            "output_bytes": self.output_bytes,
            "output_duration": self.output_seconds.map(round3),
            "audio_streams": self.audio_streams,
            "subtitle_streams": self.subtitle_streams,
            "stopped": self.stopped_by.is_some(),
            "notes": self.notes,
        })
        .to_string()
    }

    pub(crate) fn text(&self) -> String {
        let duration = self
            .output_seconds
            .map(|s| format!("{s:.2} s, "))
            .unwrap_or_default();
        let stopped = match &self.stopped_by {
            Some(s) => format!(" (stopped by {s}: the file holds what was done)"),
            None => String::new(),
        };
        format!(
            "wrote {}: {} frames at {} fps from {} ({duration}{}), in {:.1} s: {:.2} fps, backend {}, \
             model {}, encoder {}{stopped}",
            self.output,
            self.frames_out,
            self.rate,
            self.frames_in,
            bytes(self.output_bytes),
            self.seconds,
            self.fps(),
            self.backend,
            self.model,
            self.encoder,
        )
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GB", n as f64 / 1e9),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / 1e6),
        n => format!("{:.0} kB", (n as f64 / 1e3).ceil()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_fields() {
        let s = Summary {
            input: "a.mp4".into(),
            output: "b.mp4".into(),
            frames_in: 10,
            frames_out: 19,
            seconds: 2.0,
            backend: "cpu (2 threads)".into(),
            model: "embedded".into(),
            factor: Some(2),
            rate: "60/1".into(),
            encoder: "x264enc".into(),
            output_bytes: 12345,
            output_seconds: Some(0.3166666),
            audio_streams: 1,
            subtitle_streams: 0,
            stopped_by: None,
            notes: vec![],
        };
        let v: serde_json::Value = serde_json::from_str(&s.json()).unwrap();
        assert_eq!(v["frames_out"], 19);
        assert_eq!(v["fps"], 9.5);
        assert_eq!(v["output_duration"], 0.317);
        assert_eq!(v["stopped"], false);
        assert!(
            s.text().contains("19 frames at 60/1 fps from 10"),
            "{}",
            s.text()
        );
    }
}
