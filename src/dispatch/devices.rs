// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `devices` property and the per-engine fault switch (`FLAVR_FAULT_ENGINE`), as text.

/// What the `devices` property selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Devices {
    /// Empty: one engine, on `device-id` (as before the property existed).
    Single,
    /// `all`: one CUDA engine per GPU of the machine.
    All,
    /// `0,1,2,3`: one engine per entry, on that GPU; an id may repeat (two engines on one GPU).
    /// With `backend=cpu`, one CPU engine per entry.
    List(Vec<u32>),
    /// `cpu:N`: N CPU engines (`backend=cpu` or `auto`).
    Cpu(usize),
}

/// Engines one element may run; more is refused at start.
pub const MAX_ENGINES: usize = 64;

/// Parses the `devices` property. The error says what is wrong and what is accepted.
pub fn parse_devices(text: &str) -> Result<Devices, String> {
    let t = text.trim();
    let accepted =
        "use a list of GPU ids such as \"0,1\", \"all\", \"cpu:N\", or empty for device-id";
    if t.is_empty() {
        return Ok(Devices::Single);
    }
    if t.eq_ignore_ascii_case("all") {
        return Ok(Devices::All);
    }
    if let Some(n) = t.strip_prefix("cpu:") {
        let n: usize = n.trim().parse().map_err(|_| {
            format!("devices=\"{text}\": `{n}` is not a number of CPU engines; {accepted}")
        })?;
        if n == 0 || n > MAX_ENGINES {
            return Err(format!(
                "devices=\"{text}\": {n} CPU engines; use 1 to {MAX_ENGINES}"
            ));
        }
        return Ok(Devices::Cpu(n));
    }
    let mut ids = Vec::new();
    for part in t.split(',') {
        let p = part.trim();
        let id: u32 = p.parse().map_err(|_| {
            if p.is_empty() {
                format!("devices=\"{text}\": an empty entry; {accepted}")
            } else {
                format!("devices=\"{text}\": `{p}` is not a GPU id; {accepted}")
            }
        })?;
        ids.push(id);
    }
    if ids.len() > MAX_ENGINES {
        return Err(format!(
            "devices=\"{text}\": {} engines; at most {MAX_ENGINES}",
            ids.len()
        ));
    }
    Ok(Devices::List(ids))
}

/// When an engine's injected fault strikes (`FLAVR_FAULT_ENGINE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineFault {
    /// Opening the engine fails.
    Start,
    /// The engine runs `n` windows, then every later window fails.
    After(u64),
}

/// Parses `FLAVR_FAULT_ENGINE`: comma-separated `INDEX:start` or `INDEX:after:N`, where INDEX
/// is the engine's place in the `devices` list (from 0). Returns (index, fault) pairs.
pub fn parse_faults(text: &str) -> Result<Vec<(usize, EngineFault)>, String> {
    let bad = |p: &str| {
        format!(
            "FLAVR_FAULT_ENGINE=\"{text}\": `{p}` is not INDEX:start or INDEX:after:N \
             (e.g. 1:after:2)"
        )
    };
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = part.split(':');
        let index: usize = it
            .next()
            .and_then(|i| i.trim().parse().ok())
            .ok_or_else(|| bad(part))?;
        let fault = match (it.next(), it.next(), it.next()) {
            (Some("start"), None, None) => EngineFault::Start,
            (Some("after"), Some(n), None) => {
                EngineFault::After(n.trim().parse().map_err(|_| bad(part))?)
            }
            _ => return Err(bad(part)),
        };
        out.push((index, fault));
    }
    Ok(out)
}
