// SPDX-License-Identifier: MIT OR Apache-2.0
//! What INPUT holds, before anything is built: gst-pbutils' discoverer reads its streams
//! (decoding one frame of each), so a missing input, a file that is not a video and a codec
//! without a decoder are reported before the conversion starts.

use std::path::Path;
use std::sync::{Arc, Mutex};

use gst::glib;
use gst_pbutils::prelude::*;

use crate::exit::{Code, Failure};
use crate::plugins;
use crate::rate::Rate;

/// What the conversion needs to know of the input.
#[derive(Clone, Debug)]
pub(crate) struct Input {
    pub(crate) uri: String,
    pub(crate) duration: Option<gst::ClockTime>,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// `None`: variable or unknown frame rate.
    pub(crate) rate: Option<Rate>,
    /// The `image-orientation` tag of the video stream (`rotate-90`, ...), if any.
    pub(crate) orientation: Option<String>,
    pub(crate) video_codec: String,
}

impl Input {
    /// The number of input frames, estimated from the duration and the frame rate.
    pub(crate) fn frames_estimate(&self) -> Option<u64> {
        let (d, r) = (self.duration?, self.rate?);
        let frames = d.nseconds() as f64 * r.fps() / 1e9;
        (frames >= 1.0).then(|| frames.round() as u64)
    }
}

/// Checks that `path` is a readable file.
pub(crate) fn check_readable(path: &Path) -> Result<(), Failure> {
    let name = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        Failure::new(Code::InputMissing, format!("cannot read {name}: {why}"))
    })?;
    if meta.is_dir() {
        return Err(Failure::new(
            Code::InputMissing,
            format!("{name} is a folder, not a video file"),
        ));
    }
    std::fs::File::open(path)
        .map_err(|e| Failure::new(Code::InputMissing, format!("cannot read {name}: {e}")))?;
    Ok(())
}

/// The `file://` URI of `path` (made absolute).
pub(crate) fn file_uri(path: &Path) -> Result<String, Failure> {
    let abs = std::path::absolute(path)
        .map_err(|e| Failure::failed(format!("{}: {e}", path.display())))?;
    glib::filename_to_uri(&abs, None)
        .map(|u| u.to_string())
        .map_err(|e| Failure::failed(format!("{}: {e}", path.display())))
}

/// Reads the streams of `path`.
pub(crate) fn probe(path: &Path) -> Result<Input, Failure> {
    check_readable(path)?;
    let uri = file_uri(path)?;
    let name = path.display().to_string();
    let (info, error) = discover(&uri)?;
    let details = info.missing_elements_installer_details();
    let videos = info.video_streams();
    // A missing decoder for the video (or the container) matters; one for audio does not
    // when the video decodes (the audio is then left out, with a note).
    if (videos.is_empty() || info.result() == gst_pbutils::DiscovererResult::MissingPlugins)
        && let Some(d) = details
            .iter()
            .find(|d| videos.is_empty() || !d.contains("decoder-audio/"))
    {
        let description = d.split('|').nth(3).unwrap_or("this format").to_string();
        let f = plugins::missing(d, &description);
        return Err(Failure::new(f.code, format!("{name}: {}", f.message)));
    }
    match info.result() {
        gst_pbutils::DiscovererResult::Ok | gst_pbutils::DiscovererResult::MissingPlugins => {}
        gst_pbutils::DiscovererResult::Timeout => {
            return Err(Failure::new(
                Code::NotVideo,
                format!("{name}: reading its streams timed out"),
            ));
        }
        _ => {
            let why = error.unwrap_or_else(|| "not a media file GStreamer can read".into());
            return Err(Failure::new(
                Code::NotVideo,
                format!("{name} is not a video: {why}"),
            ));
        }
    }
    let Some(video) = videos.iter().find(|v| !v.is_image()).or(videos.first()) else {
        return Err(Failure::new(
            Code::NotVideo,
            format!("{name} is not a video: it has no video stream"),
        ));
    };
    if video.is_image() && info.duration().is_none_or(|d| d.is_zero()) {
        return Err(Failure::new(
            Code::NotVideo,
            format!("{name} is a still image, not a video"),
        ));
    }
    let fr = video.framerate();
    let rate = (fr.numer() > 0 && fr.denom() > 0).then(|| Rate {
        num: fr.numer() as u32,
        den: fr.denom() as u32,
    });
    let orientation = video
        .tags()
        .and_then(|t| {
            t.get::<gst::tags::ImageOrientation>()
                .map(|v| v.get().to_string())
        })
        .filter(|o| o != "rotate-0");
    let video_codec = video
        .caps()
        .map(|c| gst_pbutils::pb_utils_get_codec_description(&c).to_string())
        .unwrap_or_default();
    Ok(Input {
        uri,
        duration: info.duration(),
        width: video.width(),
        height: video.height(),
        rate,
        orientation,
        video_codec,
    })
}

/// Runs the discoverer on `uri`; the info and the error text, if any.
fn discover(uri: &str) -> Result<(gst_pbutils::DiscovererInfo, Option<String>), Failure> {
    let context = glib::MainContext::new();
    context
        .with_thread_default(|| {
            let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(60))
                .map_err(|e| Failure::failed(format!("cannot start the discoverer: {e}")))?;
            let main_loop = glib::MainLoop::new(Some(&context), false);
            let found = Arc::new(Mutex::new(None));
            let f = found.clone();
            discoverer.connect_discovered(move |_, info, err| {
                *f.lock().unwrap() = Some((info.clone(), err.map(|e| e.to_string())));
            });
            let l = main_loop.clone();
            discoverer.connect_finished(move |_| l.quit());
            discoverer.start();
            discoverer
                .discover_uri_async(uri)
                .map_err(|e| Failure::failed(format!("cannot read {uri}: {e}")))?;
            main_loop.run();
            discoverer.stop();
            let r = found.lock().unwrap().take();
            r.ok_or_else(|| Failure::failed(format!("the discoverer gave nothing for {uri}")))
        })
        .map_err(|e| Failure::failed(format!("cannot run the discoverer: {e}")))?
}

/// The duration of a finished file, as the discoverer reads it.
pub(crate) fn duration(path: &Path) -> Option<gst::ClockTime> {
    let uri = file_uri(path).ok()?;
    discover(&uri).ok()?.0.duration()
}
