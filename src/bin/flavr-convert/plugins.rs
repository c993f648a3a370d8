// SPDX-License-Identifier: MIT OR Apache-2.0
//! Which Debian/Ubuntu package holds a missing GStreamer decoder or element, from the
//! installer details of gst-pbutils' missing-plugin messages
//! (`gstreamer|1.0|APP|DESCRIPTION|decoder-CAPS` or `...|element-NAME`).

use crate::exit::{Code, Failure};

/// Media types (decoders and demuxers) and the package whose plugin decodes them on
/// Debian 12 / Ubuntu.
const DECODERS: &[(&str, &str)] = &[
    ("video/x-h264", "gstreamer1.0-libav"),
    ("video/x-h265", "gstreamer1.0-libav"),
    ("video/x-vp8", "gstreamer1.0-plugins-good"),
    ("video/x-vp9", "gstreamer1.0-plugins-good"),
    ("video/x-av1", "gstreamer1.0-plugins-bad"),
    ("video/x-theora", "gstreamer1.0-plugins-base"),
    ("image/jpeg", "gstreamer1.0-plugins-good"),
    ("image/png", "gstreamer1.0-plugins-good"),
    ("video/mpeg", "gstreamer1.0-libav"),
    (
        "audio/mpeg, mpegversion=(int)1",
        "gstreamer1.0-plugins-good",
    ),
    ("audio/mpeg", "gstreamer1.0-libav"),
    ("audio/x-vorbis", "gstreamer1.0-plugins-base"),
    ("audio/x-opus", "gstreamer1.0-plugins-base"),
    ("audio/x-flac", "gstreamer1.0-plugins-good"),
    ("video/quicktime", "gstreamer1.0-plugins-good"),
    ("video/x-matroska", "gstreamer1.0-plugins-good"),
    ("video/webm", "gstreamer1.0-plugins-good"),
    ("video/x-msvideo", "gstreamer1.0-plugins-good"),
    ("video/x-flv", "gstreamer1.0-plugins-good"),
    ("application/ogg", "gstreamer1.0-plugins-base"),
    ("video/mpegts", "gstreamer1.0-plugins-bad"),
];

/// Elements flavr-convert builds, and their packages.
const ELEMENTS: &[(&str, &str)] = &[
    ("x264enc", "gstreamer1.0-plugins-ugly"),
    ("x265enc", "gstreamer1.0-plugins-bad"),
    ("vp8enc", "gstreamer1.0-plugins-good"),
    ("vp9enc", "gstreamer1.0-plugins-good"),
    ("av1enc", "gstreamer1.0-plugins-bad"),
    ("h264parse", "gstreamer1.0-plugins-bad"),
    ("h265parse", "gstreamer1.0-plugins-bad"),
    ("mp4mux", "gstreamer1.0-plugins-good"),
    ("qtmux", "gstreamer1.0-plugins-good"),
    ("matroskamux", "gstreamer1.0-plugins-good"),
    ("webmmux", "gstreamer1.0-plugins-good"),
    ("avenc_aac", "gstreamer1.0-libav"),
    ("voaacenc", "gstreamer1.0-plugins-bad"),
    ("opusenc", "gstreamer1.0-plugins-base"),
    ("vorbisenc", "gstreamer1.0-plugins-base"),
];

/// Every other element used here (videoconvert, queue, uridecodebin, audioconvert, ...)
/// comes with GStreamer itself or its base plugins.
const BASE: &str = "gstreamer1.0-plugins-base";

/// The package that decodes `caps` (a caps string), if known.
pub(crate) fn package_for_caps(caps: &str) -> Option<&'static str> {
    let caps: gst::Caps = caps.parse().ok()?;
    DECODERS.iter().find_map(|(known, package)| {
        let known: gst::Caps = known.parse().ok()?;
        caps.can_intersect(&known).then_some(*package)
    })
}

/// The package that holds the element `name`.
pub(crate) fn package_for_element(name: &str) -> &'static str {
    ELEMENTS
        .iter()
        .find(|(e, _)| *e == name)
        .map(|(_, p)| *p)
        .unwrap_or(BASE)
}

/// A missing plugin, from an installer detail string and the message's description.
pub(crate) fn missing(detail: &str, description: &str) -> Failure {
    let what = detail.rsplit('|').next().unwrap_or(detail);
    if let Some(caps) = what.strip_prefix("decoder-") {
        let hint = match package_for_caps(caps) {
            Some(p) => format!("install the package {p} (Debian/Ubuntu: sudo apt install {p})"),
            None => "install the GStreamer plugin that decodes it (gst-inspect-1.0 lists those installed)"
                .to_string(),
        };
        return Failure::new(
            Code::NoDecoder,
            format!("no GStreamer decoder for {description} is installed: {hint}"),
        );
    }
    if let Some(name) = what.strip_prefix("element-") {
        return missing_element(name);
    }
    Failure::new(
        Code::NoDecoder,
        format!("a GStreamer plugin is missing: {description} ({what})"),
    )
}

/// The failure for an element flavr-convert needs and cannot make.
pub(crate) fn missing_element(name: &str) -> Failure {
    let p = package_for_element(name);
    Failure::new(
        Code::NoEncoder,
        format!(
            "the GStreamer element {name} is not installed: install the package {p} \
             (Debian/Ubuntu: sudo apt install {p})"
        ),
    )
}

/// Makes the element `factory` or fails naming its package.
pub(crate) fn make(factory: &str) -> Result<gst::Element, Failure> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| missing_element(factory))
}

/// Whether an element factory is installed and usable (rank aside).
pub(crate) fn have(factory: &str) -> bool {
    gst::ElementFactory::find(factory).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_found_for_decoders_and_elements() {
        crate::test_support::init();
        assert_eq!(
            package_for_caps("video/x-h264, stream-format=(string)avc"),
            Some("gstreamer1.0-libav")
        );
        assert_eq!(
            package_for_caps("audio/mpeg, mpegversion=(int)1, layer=(int)3"),
            Some("gstreamer1.0-plugins-good")
        );
        assert_eq!(
            package_for_caps("audio/mpeg, mpegversion=(int)4"),
            Some("gstreamer1.0-libav")
        );
        assert_eq!(package_for_caps("video/x-nothing"), None);
        let f = missing(
            "gstreamer|1.0|flavr-convert|H.264 decoder|decoder-video/x-h264, profile=(string)high",
            "H.264 (High Profile) decoder",
        );
        assert_eq!(f.code, Code::NoDecoder);
        assert!(f.message.contains("gstreamer1.0-libav"), "{f}");
        let f = missing("gstreamer|1.0|x|x264enc|element-x264enc", "x264enc");
        assert_eq!(f.code, Code::NoEncoder);
        assert!(f.message.contains("gstreamer1.0-plugins-ugly"), "{f}");
    }
}
