// SPDX-License-Identifier: MIT OR Apache-2.0
//! The element's errors, with messages that name the cause, and their GStreamer forms.

use crate::backend::BackendError;
use crate::model::LoadError;
use crate::window::{PlanError, WindowError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot load model `{path}`: {source}")]
    Load { path: String, source: LoadError },
    #[error("cannot load the embedded model: {0}")]
    LoadEmbedded(LoadError),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("CUDA backend on GPU {device} failed to open: {source}")]
    Cuda { device: u32, source: BackendError },
    #[error("CPU backend failed to open: {0}")]
    Cpu(BackendError),
    #[error("backend makes {backend} frames per window but the model has {model} outputs")]
    Outputs { backend: usize, model: usize },
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("{0}")]
    Window(#[from] WindowError),
    #[error("{0}")]
    Caps(String),
    /// The `devices` property or the engine fault switch is not understood.
    #[error("{0}")]
    Devices(String),
    #[error("{0}")]
    Buffer(String),
}

impl Error {
    /// The error as an element error message (for `start()` and the bus).
    pub fn to_error_msg(&self) -> gst::ErrorMessage {
        let text = self.to_string();
        match self {
            Error::Plan(_) | Error::Outputs { .. } | Error::Devices(_) => {
                gst::error_msg!(gst::LibraryError::Settings, ("{}", text))
            }
            Error::Load {
                source: LoadError::Io(_),
                ..
            } => gst::error_msg!(gst::ResourceError::OpenRead, ("{}", text)),
            Error::Load { .. } | Error::LoadEmbedded(_) => {
                gst::error_msg!(gst::ResourceError::Read, ("{}", text))
            }
            Error::Cuda { .. } | Error::Cpu(_) => {
                gst::error_msg!(gst::LibraryError::Init, ("{}", text))
            }
            Error::Backend(_) => gst::error_msg!(gst::LibraryError::Failed, ("{}", text)),
            Error::Window(_) | Error::Buffer(_) => {
                gst::error_msg!(gst::StreamError::Format, ("{}", text))
            }
            Error::Caps(_) => gst::error_msg!(gst::CoreError::Negotiation, ("{}", text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let e = Error::Load {
            path: "/x/flavr.pth".into(),
            source: LoadError::MissingKey("outconv.1.weight".into()),
        };
        let s = e.to_string();
        assert!(
            s.contains("/x/flavr.pth") && s.contains("outconv.1.weight"),
            "{s}"
        );
        let e = Error::Plan(PlanError::Unsupported { factor: 8, n: 5 });
        assert!(e.to_string().contains("factor 8"));
    }
}
