//! A lake URL opened as an object store, driven from synchronous code.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// The lake's storage.
pub struct Lake {
    pub(super) store: Arc<dyn ObjectStore>,
    base: String,
    url: String,
    /// The folder of a local lake.
    local: Option<std::path::PathBuf>,
    pub(super) runtime: tokio::runtime::Runtime,
}

/// A lake operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The URL is not one the lake understands.
    #[error("lake URL `{url}`: {reason}\n  hint: use a local path, file:///absolute/path or hdfs://namenode:port/path")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store refused an operation.
    #[error("lake {url}: cannot {action} `{path}`: {source}")]
    Store {
        /// The lake URL.
        url: String,
        /// What was being done.
        action: &'static str,
        /// The path inside the lake.
        path: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// Writing or reading Parquet failed.
    #[error("lake {url}: Parquet `{path}`: {message}")]
    Parquet {
        /// The lake URL.
        url: String,
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Another run holds the lake.
    #[error(
        "lake {url} is in use by run {} (pid {} on {}, since {})\n  hint: wait for it to finish; a killed run's lock is broken automatically",
        holder.run_id, holder.pid, holder.host, medallion_common::date::rfc3339(holder.since as i64 * 1_000_000)
    )]
    Locked {
        /// The lake URL.
        url: String,
        /// Who holds it.
        holder: Box<super::Holder>,
    },
    /// A Delta table's log that cannot be read or written.
    #[error("lake {url}: Delta table `{table}`: {message}")]
    Delta {
        /// The lake URL.
        url: String,
        /// The table's folder.
        table: String,
        /// What is wrong.
        message: String,
    },
    /// A commit manifest that cannot be read.
    #[error(
        "lake {url}: commit manifest `{path}` is unreadable: {message}\n  hint: the previous commit is lost; re-run the stage for this partition"
    )]
    Manifest {
        /// The lake URL.
        url: String,
        /// The manifest.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Lake {
    /// Opens the lake at `url`: a local path (created if missing),
    /// `file:///abs/path`, or `hdfs://host:port/path`.
    pub fn open(url: &str) -> Result<Self, LakeError> {
        let bad = |reason: String| LakeError::BadUrl { url: url.to_owned(), reason };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("medallion-lake")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start the I/O runtime: {e}")))?;
        let (store, base, local_root): (Arc<dyn ObjectStore>, String, _) =
            if let Some(rest) = url.strip_prefix("hdfs://") {
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                if authority.is_empty() {
                    return Err(bad("no namenode host:port".to_owned()));
                }
                let namenode = format!("hdfs://{authority}");
                let store = {
                    let _guard = runtime.enter();
                    hdfs_native_object_store::HdfsObjectStoreBuilder::new()
                        .with_url(&namenode)
                        .with_io_runtime(runtime.handle().clone())
                        .build()
                        .map_err(|e| bad(format!("cannot reach the namenode: {e}")))?
                };
                (Arc::new(store), path.trim_matches('/').to_owned(), None)
            } else {
                let local = url.strip_prefix("file://").unwrap_or(url);
                if url.contains("://") && !url.starts_with("file://") {
                    return Err(bad("unknown scheme".to_owned()));
                }
                std::fs::create_dir_all(local).map_err(|e| bad(format!("cannot create the folder: {e}")))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(local)
                    .map_err(|e| bad(e.to_string()))?
                    .with_automatic_cleanup(true);
                let root = std::path::absolute(local).map_err(|e| bad(e.to_string()))?;
                (Arc::new(store), String::new(), Some(root))
            };
        Ok(Lake { store, base, url: url.to_owned(), local: local_root, runtime })
    }

    /// The URL the lake was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where `relative` is on this machine's disk, for a local lake (`None`
    /// for HDFS).
    pub fn local_path(&self, relative: &str) -> Option<std::path::PathBuf> {
        self.local.as_ref().map(|root| root.join(relative))
    }

    pub(super) fn path(&self, relative: &str) -> StorePath {
        if self.base.is_empty() {
            StorePath::from(relative)
        } else {
            StorePath::from(format!("{}/{relative}", self.base))
        }
    }

    fn relative(&self, path: &StorePath) -> String {
        let full = path.as_ref();
        if self.base.is_empty() {
            full.to_owned()
        } else {
            full.strip_prefix(&format!("{}/", self.base)).unwrap_or(full).to_owned()
        }
    }

    pub(super) fn fail(&self, action: &'static str, path: &str, source: object_store::Error) -> LakeError {
        LakeError::Store { url: self.url.clone(), action, path: path.to_owned(), source: Box::new(source) }
    }

    /// Writes `bytes` at `relative`, atomically (readers see all or nothing).
    pub fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        let path = self.path(relative);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(Bytes::from(bytes))))
            .map(|_| ())
            .map_err(|e| self.fail("write", relative, e))
    }

    /// Creates `relative` holding `bytes` unless it exists (put-if-absent:
    /// a hard link on a local lake, a create without overwrite on HDFS), in
    /// one atomic step: whether it did.
    pub fn create_new(&self, relative: &str, bytes: Vec<u8>) -> Result<bool, LakeError> {
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let path = self.path(relative);
        match self.runtime.block_on(self.store.put_opts(&path, PutPayload::from(Bytes::from(bytes)), options)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.fail("create", relative, e)),
        }
    }

    /// Copies `from` to `to` (replacing it), inside the lake.
    pub fn copy(&self, from: &str, to: &str) -> Result<(), LakeError> {
        let (source, target) = (self.path(from), self.path(to));
        self.runtime.block_on(self.store.copy(&source, &target)).map_err(|e| self.fail("copy", from, e))
    }

    /// Where `relative` is, as another program names it: `file:///...` for
    /// a local lake (absolute), `hdfs://namenode:port/...` for HDFS.
    pub fn location(&self, relative: &str) -> String {
        let base = match &self.local {
            Some(root) => format!("file://{}", root.to_string_lossy().trim_end_matches('/')),
            None => self.url.trim_end_matches('/').to_owned(),
        };
        match relative.trim_matches('/') {
            "" => base,
            relative => format!("{base}/{relative}"),
        }
    }

    /// Reads `relative`, or `None` when it does not exist.
    pub fn get(&self, relative: &str) -> Result<Option<Bytes>, LakeError> {
        let path = self.path(relative);
        let result = self.runtime.block_on(async {
            match self.store.get(&path).await {
                Ok(found) => found.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        result.map_err(|e| self.fail("read", relative, e))
    }

    /// The size of `relative` in bytes.
    pub fn size(&self, relative: &str) -> Result<u64, LakeError> {
        let path = self.path(relative);
        self.runtime.block_on(self.store.head(&path)).map(|meta| meta.size).map_err(|e| self.fail("read", relative, e))
    }

    /// Reads the bytes `range` of `relative`.
    pub fn get_range(&self, relative: &str, range: std::ops::Range<u64>) -> Result<Bytes, LakeError> {
        let path = self.path(relative);
        self.runtime.block_on(self.store.get_range(&path, range)).map_err(|e| self.fail("read", relative, e))
    }

    /// Copies `relative` to the local file `to`, 8 MiB at a time.
    pub fn copy_to_local(&self, relative: &str, to: &std::path::Path) -> Result<(), LakeError> {
        use std::io::Write;
        const STEP: u64 = 8 << 20;
        let local = |e: std::io::Error| LakeError::Parquet {
            url: self.url.clone(),
            path: relative.to_owned(),
            message: format!("cannot copy it to `{}`: {e}", to.display()),
        };
        let size = self.size(relative)?;
        let mut file = std::fs::File::create(to).map_err(local)?;
        for start in (0..size).step_by(STEP as usize) {
            file.write_all(&self.get_range(relative, start..(start + STEP).min(size))?).map_err(local)?;
        }
        file.sync_data().map_err(local)
    }

    /// Every file under `relative` (recursively), as lake-relative paths.
    pub fn list(&self, relative: &str) -> Result<Vec<String>, LakeError> {
        let prefix = self.path(relative);
        let result = self.runtime.block_on(async {
            use futures_util::TryStreamExt;
            self.store.list(Some(&prefix)).try_collect::<Vec<_>>().await
        });
        match result {
            Ok(objects) => Ok(objects.iter().map(|o| self.relative(&o.location)).collect()),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.fail("list", relative, e)),
        }
    }

    /// Deletes `relative`; a file already gone is fine.
    pub fn delete(&self, relative: &str) -> Result<(), LakeError> {
        let path = self.path(relative);
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("delete", relative, e)),
        }
    }
}

impl Lake {
    /// Reads Parquet files whole, in order (for checks and small tables; the
    /// stages stream instead).
    pub fn read_parquet(&self, files: &[String]) -> Result<Vec<arrow_array::RecordBatch>, LakeError> {
        let mut batches = Vec::new();
        for file in files {
            let parquet_error = |e: &dyn std::fmt::Display| LakeError::Parquet {
                url: self.url.clone(),
                path: file.clone(),
                message: e.to_string(),
            };
            let bytes = self.get(file)?.ok_or_else(|| parquet_error(&"the file is missing"))?;
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(|e| parquet_error(&e))?;
            for batch in reader {
                batches.push(batch.map_err(|e| parquet_error(&e))?);
            }
        }
        Ok(batches)
    }
}

/// A file being written to the lake, in parts of [`PART_BYTES`]; it appears
/// whole at [`LakeFile::finish`] (multipart upload: a temporary file renamed
/// at the end, on both backends) and never if dropped unfinished.
pub struct LakeFile<'a> {
    lake: &'a Lake,
    relative: String,
    upload: Box<dyn object_store::MultipartUpload>,
    buffer: Vec<u8>,
}

/// Size of one uploaded part: bounds the memory a file being written holds.
const PART_BYTES: usize = 16 << 20;

impl Lake {
    /// Starts writing `relative`.
    pub fn create(&self, relative: &str) -> Result<LakeFile<'_>, LakeError> {
        let path = self.path(relative);
        let upload =
            self.runtime.block_on(self.store.put_multipart(&path)).map_err(|e| self.fail("create", relative, e))?;
        Ok(LakeFile { lake: self, relative: relative.to_owned(), upload, buffer: Vec::with_capacity(PART_BYTES) })
    }
}

impl LakeFile<'_> {
    fn send_part(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_BYTES));
        let upload = self.upload.put_part(PutPayload::from(Bytes::from(part)));
        self.lake.runtime.block_on(upload).map_err(std::io::Error::other)
    }

    /// Uploads what is left and publishes the file.
    pub fn finish(mut self) -> Result<(), LakeError> {
        let relative = self.relative.clone();
        self.send_part().map_err(|e| {
            self.lake.fail("write", &relative, object_store::Error::Generic { store: "lake", source: Box::new(e) })
        })?;
        self.lake
            .runtime
            .block_on(self.upload.complete())
            .map(|_| ())
            .map_err(|e| self.lake.fail("finish", &relative, e))
    }
}

impl std::io::Write for LakeFile<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = PART_BYTES - self.buffer.len();
        let taken = bytes.len().min(room);
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() == PART_BYTES {
            self.send_part()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
