//! [`FileSet`]: a directory of files that go together (an index and its data files, a model
//! directory), rewritten for each input with one file replaced by the input under test.

use std::path::{Path, PathBuf};

use crate::Outcome;

/// Named files with their original contents, written into one working directory.
#[derive(Debug, Clone)]
pub struct FileSet {
    dir: PathBuf,
    files: Vec<(String, Vec<u8>)>,
}

impl FileSet {
    /// A set writing `files` (name, original contents) into `dir`, which is created.
    pub fn new(dir: &Path, files: Vec<(String, Vec<u8>)>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(FileSet { dir: dir.to_owned(), files })
    }

    /// A set of the files `names` as they are in `from`, writing into `dir`.
    pub fn copy_of(from: &Path, names: &[&str], dir: &Path) -> std::io::Result<Self> {
        let files = names
            .iter()
            .map(|n| Ok(((*n).to_owned(), std::fs::read(from.join(n))?)))
            .collect::<std::io::Result<_>>()?;
        Self::new(dir, files)
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File `k`'s original contents.
    pub fn original(&self, k: usize) -> &[u8] {
        &self.files[k].1
    }

    /// Writes every file, file `k` with `bytes` instead of its original.
    pub fn write_with(&self, k: usize, bytes: &[u8]) -> Outcome {
        for (j, (name, original)) in self.files.iter().enumerate() {
            let content = if j == k { bytes } else { original };
            std::fs::write(self.dir.join(name), content)
                .map_err(|e| format!("writing the input's {name}: {e}"))?;
        }
        Ok(())
    }
}
