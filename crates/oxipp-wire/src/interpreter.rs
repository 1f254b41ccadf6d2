//! Which Python interpreter an oxipp process starts for Python work (engines, the dask
//! scheduler of `become_dask`), when nobody named one.

use std::path::Path;

/// `$OXIPP_PYTHON`; else the interpreter the command line came in through (`python -m oxipp`,
/// or the console script naming it in `$OXIPP_SELF_PYTHON`, unresolved, so a venv stays a
/// venv); else this process when it is Python; else a `python3` next to this executable (a
/// venv's `bin/`); else the active virtualenv's python; else `python3` from `PATH`.
pub fn default_python() -> String {
    for var in ["OXIPP_PYTHON", "OXIPP_SELF_PYTHON"] {
        if let Some(p) = std::env::var(var).ok().filter(|s| !s.is_empty()) {
            return p;
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("python") {
            return exe.display().to_string();
        }
        if let Some(sibling) = exe.parent().map(|d| d.join("python3")) {
            if sibling.exists() {
                return sibling.display().to_string();
            }
        }
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let p = Path::new(&venv).join("bin").join("python");
        if p.exists() {
            return p.display().to_string();
        }
    }
    "python3".into()
}
