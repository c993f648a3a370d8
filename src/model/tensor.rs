//! A dense float32 tensor in host memory, row-major, in PyTorch's layout.

/// Row-major (C-contiguous) float32 tensor. Conv weights keep PyTorch's layout:
/// `[out, in, kT, kH, kW]` for convolutions, `[in, out, kT, kH, kW]` for transposed ones.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor from its shape and data; `None` when the element count does not match.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Tensor> {
        (numel(&shape) == Some(data.len())).then_some(Tensor { shape, data })
    }

    pub fn zeros(shape: &[usize]) -> Tensor {
        let n = numel(shape).expect("tensor shape overflows usize");
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; n],
        }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Number of elements of a shape, or `None` on overflow.
pub fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// `[a, b, c]` as text, for error messages.
pub fn shape_str(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}
