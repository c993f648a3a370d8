// SPDX-License-Identifier: MIT OR Apache-2.0
//! OUTPUT's container, from its extension: the muxer, the video encoder and its quality
//! setting, and the audio encoder for audio the container cannot take as it is.

use std::path::Path;

use gst::prelude::*;

use crate::exit::Failure;
use crate::plugins;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Container {
    Mp4,
    Mkv,
    Mov,
    Webm,
}

/// The default `--quality`: H.264's CRF scale, visually close to the source.
pub(crate) const DEFAULT_QUALITY: u32 = 20;

impl Container {
    pub(crate) fn from_path(path: &Path) -> Result<Container, Failure> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("mp4" | "m4v") => Ok(Container::Mp4),
            Some("mkv") => Ok(Container::Mkv),
            Some("mov") => Ok(Container::Mov),
            Some("webm") => Ok(Container::Webm),
            _ => Err(Failure::usage(format!(
                "{}: OUTPUT must end in .mp4, .mkv, .mov or .webm (the container is chosen from it)",
                path.display()
            ))),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Mkv => "mkv",
            Container::Mov => "mov",
            Container::Webm => "webm",
        }
    }

    pub(crate) fn muxer(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4mux",
            Container::Mkv => "matroskamux",
            Container::Mov => "qtmux",
            Container::Webm => "webmmux",
        }
    }

    /// Video encoders in order of preference; with the GPU in use, NVENC first.
    fn video_encoders(self, gpu: bool) -> &'static [&'static str] {
        match (self, gpu) {
            (Container::Webm, _) => &["vp8enc", "vp9enc"],
            (_, true) => &["nvh264enc", "nvcudah264enc", "x264enc"],
            (_, false) => &["x264enc"],
        }
    }

    /// Audio encoders for audio the container cannot take as it comes.
    fn audio_encoders(self) -> &'static [&'static str] {
        match self {
            Container::Mp4 | Container::Mov => &["avenc_aac", "voaacenc", "fdkaacenc"],
            Container::Mkv | Container::Webm => &["opusenc", "vorbisenc"],
        }
    }

    /// The video encoder's factory name: `--encoder`, or the first installed default.
    pub(crate) fn pick_video_encoder(
        self,
        requested: Option<&str>,
        gpu: bool,
    ) -> Result<String, Failure> {
        if let Some(name) = requested {
            let Some(factory) = gst::ElementFactory::find(name) else {
                return Err(plugins::missing_element(name));
            };
            if !factory.has_type(gst::ElementFactoryType::VIDEO_ENCODER) {
                return Err(Failure::usage(format!(
                    "--encoder {name} is not a video encoder (gst-inspect-1.0 | grep -i enc lists them)"
                )));
            }
            let fits = src_caps(&factory).is_some_and(|c| {
                sink_template(self.muxer(), "video_%u").is_some_and(|t| c.can_intersect(&t))
            });
            if !fits {
                return Err(Failure::usage(format!(
                    "--encoder {name}: a .{} file cannot hold what it makes",
                    self.name()
                )));
            }
            return Ok(name.to_string());
        }
        let list = self.video_encoders(gpu);
        list.iter()
            .find(|e| plugins::have(e))
            .map(|e| e.to_string())
            .ok_or_else(|| plugins::missing_element(list[list.len() - 1]))
    }

    /// The audio encoder's factory name.
    pub(crate) fn pick_audio_encoder(self) -> Result<&'static str, Failure> {
        let list = self.audio_encoders();
        list.iter()
            .copied()
            .find(|e| plugins::have(e))
            .ok_or_else(|| plugins::missing_element(list[0]))
    }

    /// Whether the muxer takes `caps` as they are on a pad of `template` (`audio_%u`,
    /// `subtitle_%u`).
    pub(crate) fn takes(self, template: &str, caps: &gst::CapsRef) -> bool {
        sink_template(self.muxer(), template).is_some_and(|t| caps.is_subset(&t))
    }
}

fn src_caps(factory: &gst::ElementFactory) -> Option<gst::Caps> {
    factory
        .static_pad_templates()
        .into_iter()
        .find(|t| t.direction() == gst::PadDirection::Src)
        .map(|t| t.caps())
}

/// The caps of the muxer's request pad template `name`.
fn sink_template(muxer: &str, name: &str) -> Option<gst::Caps> {
    gst::ElementFactory::find(muxer)?
        .static_pad_templates()
        .into_iter()
        .find(|t| t.name_template() == name)
        .map(|t| t.caps())
}

/// Sets the encoder's constant-quality mode to `quality` (0 best .. 51, H.264's CRF scale);
/// the default when `None`. An error for an encoder this does not know, when a quality was
/// asked for.
pub(crate) fn configure_encoder(
    encoder: &gst::Element,
    factory: &str,
    quality: Option<u32>,
) -> Result<(), Failure> {
    let q = quality.unwrap_or(DEFAULT_QUALITY);
    match factory {
        "x264enc" => {
            encoder.set_property_from_str("pass", "qual");
            encoder.set_property("quantizer", q);
        }
        "x265enc" => encoder.set_property("option-string", format!("crf={q}")),
        "nvh264enc" | "nvcudah264enc" | "nvh265enc" | "nvcudah265enc" => {
            encoder.set_property_from_str("rc-mode", "vbr");
            encoder.set_property("const-quality", f64::from(q));
        }
        "vp8enc" | "vp9enc" => {
            encoder.set_property_from_str("end-usage", "cq");
            // libvpx's quantizer runs 0..63.
            encoder.set_property("cq-level", ((q * 63 + 25) / 51) as i32);
            encoder.set_property("target-bitrate", 50_000_000i32);
            encoder.set_property("cpu-used", 4i32);
            if encoder.has_property("row-mt") {
                encoder.set_property("row-mt", true);
            }
        }
        other if quality.is_some() => {
            return Err(Failure::usage(format!(
                "--quality: flavr-convert does not know how to set the quality of {other}; \
                 leave --quality out to use its defaults"
            )));
        }
        _ => {}
    }
    Ok(())
}

/// The parser that turns the encoder's output into what every muxer takes, if one is
/// needed (H.264/H.265 byte-stream to avc).
pub(crate) fn parser_for(encoder: &gst::Element) -> Option<&'static str> {
    let caps = encoder.static_pad("src")?.pad_template_caps();
    let name = caps.structure(0)?.name();
    match name.as_str() {
        "video/x-h264" => Some("h264parse"),
        "video/x-h265" => Some("h265parse"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_come_from_the_extension() {
        assert_eq!(
            Container::from_path(Path::new("a/b.MP4")).unwrap(),
            Container::Mp4
        );
        assert_eq!(
            Container::from_path(Path::new("x.webm")).unwrap(),
            Container::Webm
        );
        assert!(Container::from_path(Path::new("x.avi")).is_err());
        assert!(Container::from_path(Path::new("x")).is_err());
    }

    #[test]
    fn encoders_and_remuxing() {
        crate::test_support::init();
        for name in ["x264enc", "vp8enc", "mp4mux", "matroskamux", "webmmux"] {
            if !plugins::have(name) {
                eprintln!("skipping: {name} is not installed");
                return;
            }
        }
        assert_eq!(
            Container::Mp4.pick_video_encoder(None, false).unwrap(),
            "x264enc"
        );
        assert_eq!(
            Container::Webm.pick_video_encoder(None, true).unwrap(),
            "vp8enc"
        );
        let e = Container::Webm
            .pick_video_encoder(Some("x264enc"), false)
            .unwrap_err();
        assert!(e.message.contains("cannot hold"), "{e}");
        let aac: gst::Caps = "audio/mpeg, mpegversion=(int)4, stream-format=(string)raw, \
                              rate=(int)48000, channels=(int)2"
            .parse()
            .unwrap();
        assert!(Container::Mp4.takes("audio_%u", &aac));
        assert!(Container::Mkv.takes("audio_%u", &aac));
        assert!(!Container::Webm.takes("audio_%u", &aac));
        let opus: gst::Caps =
            "audio/x-opus, channel-mapping-family=(int)0, channels=(int)2, rate=(int)48000"
                .parse()
                .unwrap();
        assert!(Container::Webm.takes("audio_%u", &opus));
    }
}
