//! Where lorad keeps its data (models, adapters, ...) on disk.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// lorad's data directory: `$LORAD_HOME`, else `$XDG_DATA_HOME/lorad`, else
/// `$HOME/.local/share/lorad`.
///
/// Empty variables count as unset (a common shell accident). Without any of them (no `HOME`,
/// e.g. in a bare container) the fallback is `.lorad` in the working directory, so callers always
/// get a path and the first file operation reports a precise error if it is unusable.
pub fn default_home() -> PathBuf {
    home_from(|name| std::env::var_os(name))
}

/// [`default_home`] over an arbitrary environment, so the precedence is testable without mutating
/// the process environment.
fn home_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(home) = var("LORAD_HOME") {
        return PathBuf::from(home);
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(data) = var("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return data.join("lorad");
    }
    match var("HOME") {
        Some(home) => PathBuf::from(home).join(".local").join("share").join("lorad"),
        None => PathBuf::from(".lorad"),
    }
}

/// The directory holding base models: `home/models`.
pub fn models_dir(home: &Path) -> PathBuf {
    home.join("models")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(vars: &[(&str, &str)]) -> PathBuf {
        home_from(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v)))
    }

    #[test]
    fn precedence() {
        let all = [("LORAD_HOME", "/l"), ("XDG_DATA_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(home(&all), Path::new("/l"));
        assert_eq!(home(&all[1..]), Path::new("/x/lorad"));
        assert_eq!(home(&all[2..]), Path::new("/h/.local/share/lorad"));
        assert_eq!(
            home(&[("LORAD_HOME", ""), ("XDG_DATA_HOME", "rel"), ("HOME", "/h")]),
            Path::new("/h/.local/share/lorad")
        );
        assert_eq!(home(&[]), Path::new(".lorad"));
        assert_eq!(models_dir(Path::new("/l")), Path::new("/l/models"));
    }
}
