//! Images: whether one is present, and building one from a build context.
//!
//! Owns the build context stream and `.dockerignore`. Must not pull, tag anything but
//! the requested tag, or leave intermediate containers behind.
//!
//! # Build contexts
//! The context folder is sent as a tar stream, written by a blocking thread while the
//! engine reads it. `.dockerignore` is honoured for the common cases: comments, `*`,
//! `?`, `[...]`, `**`, leading `/`, and `!` exceptions (the last matching line wins);
//! a pattern that matches a folder excludes everything under it. The Dockerfile and
//! `.dockerignore` are always sent, as the Docker CLI does. Files keep their mode and
//! mtime; owners are set to root, as the Docker CLI does.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bollard::query_parameters::BuildImageOptions;
use futures_util::{StreamExt, TryStreamExt};
use globset::{GlobBuilder, GlobMatcher};
use tokio::sync::mpsc;

use super::{api_error, engine_message, status_code, ContainerError, Docker, STREAM_TIMEOUT};
use crate::manifest::ImageBuild;

/// Build context chunks sent to the engine: large enough that a big context costs few
/// channel hand-offs, small enough that the queue below stays a few MiB.
const CONTEXT_CHUNK: usize = 256 * 1024;
/// Chunks written ahead of the engine reading them.
const CONTEXT_QUEUE: usize = 8;

impl Docker {
    /// Whether the image is present locally.
    pub async fn image_present(&self, image: &str) -> Result<bool, ContainerError> {
        match self.client.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(err) if status_code(&err) == Some(404) => Ok(false),
            Err(err) => Err(api_error(&format!("cannot inspect image {image}"), &err)),
        }
    }

    /// Builds `build` into `tag` with the classic builder, passing each output line to
    /// `progress` as it arrives. Never pulls unless the Dockerfile's `FROM` needs an
    /// image that is not present, in which case the engine tries and its error is the
    /// build's failure.
    ///
    /// The classic builder's cache lookup lists every image with the same parent and
    /// then reads each; an image removed in between (`docker image prune`, another
    /// project's cleanup) fails the build with "unable to find image" although nothing
    /// is wrong with it. Such a build is run again, at most [`CACHE_RACE_RETRIES`] times.
    pub async fn build_image(
        &self,
        build: &ImageBuild,
        tag: &str,
        labels: HashMap<String, String>,
        mut progress: impl FnMut(&str) + Send,
    ) -> Result<(), ContainerError> {
        let mut retries = 0;
        loop {
            let result = self
                .build_image_once(build, tag, labels.clone(), &mut progress)
                .await;
            match result {
                Err(ContainerError::Build { reason })
                    if retries < CACHE_RACE_RETRIES && is_cache_race(&reason) =>
                {
                    retries += 1;
                    progress(
                        "fleet: an image the build cache was reading was removed meanwhile; \
                         building again",
                    );
                }
                other => return other,
            }
        }
    }

    async fn build_image_once(
        &self,
        build: &ImageBuild,
        tag: &str,
        labels: HashMap<String, String>,
        progress: &mut (impl FnMut(&str) + Send),
    ) -> Result<(), ContainerError> {
        let options = BuildImageOptions {
            dockerfile: build.dockerfile.clone(),
            t: Some(tag.to_string()),
            buildargs: Some(build.args.clone().into_iter().collect()),
            labels: Some(labels),
            // Intermediate containers go even when a step fails: fleet leaves no
            // unlabelled objects behind.
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let (chunks, receiver) = mpsc::channel::<io::Result<Vec<u8>>>(CONTEXT_QUEUE);
        let context = build.context.clone();
        let dockerfile = build.dockerfile.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let result = write_context(
                &context,
                &dockerfile,
                io::BufWriter::with_capacity(CONTEXT_CHUNK, ChannelWriter(chunks.clone())),
            );
            if let Err(err) = &result {
                // Fails the request body, so the engine stops waiting for the rest.
                let _ = chunks.blocking_send(Err(io::Error::new(err.kind(), err.to_string())));
            }
            result
        });
        let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|chunk| (chunk, receiver))
        })
        .map_ok(Into::into);

        let client = self.client.clone().with_timeout(STREAM_TIMEOUT);
        let mut failure = None;
        {
            let mut output =
                client.build_image(options, None, Some(bollard::body_try_stream(body)));
            while let Some(item) = output.next().await {
                match item {
                    Ok(info) => {
                        for text in [info.stream, info.status].into_iter().flatten() {
                            for line in text.lines().map(str::trim_end) {
                                if !line.is_empty() {
                                    progress(line);
                                }
                            }
                        }
                    }
                    Err(err) => {
                        let message = engine_message(&err);
                        progress(&message);
                        failure = Some(message);
                        break;
                    }
                }
            }
            // Dropping the request here lets the writer thread see the channel close
            // if the engine gave up before reading the whole context.
        }
        let context_error = match writer.await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(err) => Some(format!("the context writer failed: {err}")),
        };
        match (context_error, failure) {
            (Some(err), _) if err != BROKEN_CONTEXT_PIPE => Err(ContainerError::Build {
                reason: format!(
                    "cannot send the build context {}: {err}",
                    build.context.display()
                ),
            }),
            (_, Some(reason)) => Err(ContainerError::Build { reason }),
            (Some(err), None) => Err(ContainerError::Build { reason: err }),
            (None, None) => Ok(()),
        }
    }
}

/// How many times a build that lost the cache race is run again.
const CACHE_RACE_RETRIES: u32 = 2;

/// Whether a build failed only because an image vanished while the classic builder's
/// cache lookup read it (the engine's "unable to find image sha256:...").
fn is_cache_race(reason: &str) -> bool {
    reason.starts_with("unable to find image \"sha256:")
}

/// What the writer thread reports when the engine stopped reading the context: the
/// engine's own error is then the one worth showing.
const BROKEN_CONTEXT_PIPE: &str = "the engine stopped reading the build context";

/// Hands the tar stream to the async request body, one chunk at a time.
struct ChannelWriter(mpsc::Sender<io::Result<Vec<u8>>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, BROKEN_CONTEXT_PIPE))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `.dockerignore` rules, in file order; the last rule that matches a path decides.
#[derive(Debug, Default)]
struct DockerIgnore {
    rules: Vec<(GlobMatcher, bool)>,
    has_exceptions: bool,
}

impl DockerIgnore {
    fn read(context: &Path) -> io::Result<DockerIgnore> {
        match fs::read_to_string(context.join(".dockerignore")) {
            Ok(text) => DockerIgnore::parse(&text),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(DockerIgnore::default()),
            Err(err) => Err(err),
        }
    }

    fn parse(text: &str) -> io::Result<DockerIgnore> {
        let mut ignore = DockerIgnore::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclude, pattern) = match line.strip_prefix('!') {
                Some(rest) => (false, rest.trim()),
                None => (true, line),
            };
            let pattern = clean_pattern(pattern);
            if pattern.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|err| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("invalid .dockerignore pattern `{line}`: {err}"),
                    )
                })?;
            ignore.has_exceptions |= !exclude;
            ignore.rules.push((glob.compile_matcher(), exclude));
        }
        Ok(ignore)
    }

    /// Whether `relative` (a `/`-separated path in the context) is left out: a rule
    /// applies to a path when it matches the path or one of its parent folders.
    fn excluded(&self, relative: &str) -> bool {
        let mut excluded = false;
        for (glob, exclude) in &self.rules {
            let parents = relative
                .match_indices('/')
                .map(|(index, _)| &relative[..index]);
            if glob.is_match(relative) || parents.into_iter().any(|parent| glob.is_match(parent)) {
                excluded = *exclude;
            }
        }
        excluded
    }
}

/// Cleans a pattern the way Docker does: no leading `/` or `./`, no `.` components,
/// `..` resolved, no trailing `/`.
fn clean_pattern(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// Writes the build context as a tar stream: the folder minus what `.dockerignore`
/// leaves out, plus the Dockerfile and `.dockerignore` always.
fn write_context<W: Write>(context: &Path, dockerfile: &str, out: W) -> io::Result<()> {
    let ignore = DockerIgnore::read(context)?;
    let mut archive = tar::Builder::new(out);
    add_folder(&mut archive, context, Path::new(""), &ignore)?;
    for always in [dockerfile, ".dockerignore"] {
        let always = clean_pattern(always);
        let path = context.join(&always);
        if ignore.excluded(&always) && path.is_file() {
            add_entry(
                &mut archive,
                &path,
                Path::new(&always),
                &fs::metadata(&path)?,
            )?;
        }
    }
    archive.into_inner()?.flush()
}

fn add_folder<W: Write>(
    archive: &mut tar::Builder<W>,
    folder: &Path,
    relative: &Path,
    ignore: &DockerIgnore,
) -> io::Result<()> {
    let mut entries = fs::read_dir(folder)?.collect::<io::Result<Vec<_>>>()?;
    // A stable order makes the same folder the same stream.
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let name = relative.join(entry.file_name());
        let metadata = fs::symlink_metadata(&path)?;
        let excluded = ignore.excluded(&name.to_string_lossy());
        if metadata.is_dir() {
            // Without exceptions nothing below an excluded folder can come back, so
            // a big ignored folder (target/, node_modules/) is not even read.
            if excluded && !ignore.has_exceptions {
                continue;
            }
            if !excluded {
                add_entry(archive, &path, &name, &metadata)?;
            }
            add_folder(archive, &path, &name, ignore)?;
        } else if !excluded {
            add_entry(archive, &path, &name, &metadata)?;
        }
    }
    Ok(())
}

fn add_entry<W: Write>(
    archive: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    metadata: &fs::Metadata,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(metadata, tar::HeaderMode::Complete);
    // The Docker CLI sends every file as root's: the image should not depend on the
    // uid of whoever ran the build.
    header.set_uid(0);
    header.set_gid(0);
    let kind = metadata.file_type();
    if kind.is_file() {
        let size = metadata.len();
        // Exactly `size` bytes, whatever the file does meanwhile: a file that grew is
        // cut, one that shrank is padded, and the archive stays well formed.
        let data = File::open(path)?.take(size).chain(io::repeat(0)).take(size);
        archive.append_data(&mut header, name, data)
    } else if kind.is_dir() {
        archive.append_data(&mut header, name, io::empty())
    } else if kind.is_symlink() {
        let target: PathBuf = fs::read_link(path)?;
        archive.append_link(&mut header, name, target)
    } else {
        // Sockets, fifos and devices: nothing a Dockerfile can COPY usefully.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::super::test_support::*;

    #[test]
    fn only_a_vanished_cache_image_makes_a_build_run_again() {
        assert!(is_cache_race(
            "unable to find image \"sha256:12a1b96690bd63638dcf52491450c40e506b5a535399d0e3a44e19f22ad0de52\""
        ));
        assert!(!is_cache_race(
            "pull access denied for nowhere, repository does not exist"
        ));
        assert!(!is_cache_race(
            "The command '/bin/sh -c false' returned a non-zero code: 1"
        ));
    }

    #[test]
    fn dockerignore_last_match_wins_and_folders_cover_their_contents() -> io::Result<()> {
        let ignore = DockerIgnore::parse(
            "# comment\n\n/target\n*.log\n!keep.log\nsecrets/**\ndocs/*/draft.md\n**/.cache\n",
        )?;
        assert!(ignore.excluded("target"));
        assert!(ignore.excluded("target/debug/app"));
        assert!(ignore.excluded("build.log"));
        assert!(!ignore.excluded("keep.log"));
        // `*` does not cross folders, as in Docker.
        assert!(!ignore.excluded("logs/build.log"));
        assert!(ignore.excluded("secrets/key.pem"));
        assert!(ignore.excluded("docs/v1/draft.md"));
        assert!(!ignore.excluded("docs/v1/final.md"));
        assert!(ignore.excluded("src/deep/.cache/x"));
        assert!(!ignore.excluded("src/main.rs"));
        assert!(ignore.has_exceptions);
        assert!(DockerIgnore::parse("[").is_err());
        Ok(())
    }

    #[test]
    fn context_tar_leaves_out_ignored_files_but_keeps_the_dockerfile() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\n")?;
        fs::write(root.join(".dockerignore"), "target\nDockerfile\n*.tmp\n")?;
        fs::create_dir_all(root.join("src/nested"))?;
        fs::write(root.join("src/nested/lib.rs"), "// code\n")?;
        fs::create_dir_all(root.join("target/debug"))?;
        fs::write(root.join("target/debug/big"), vec![0u8; 4096])?;
        fs::write(root.join("scratch.tmp"), "x")?;
        std::os::unix::fs::symlink("src/nested/lib.rs", root.join("link"))?;

        let mut bytes = Vec::new();
        write_context(root, "Dockerfile", &mut bytes)?;
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut names = Vec::new();
        for entry in archive.entries()? {
            let entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            if name == "link" {
                assert_eq!(entry.header().entry_type(), tar::EntryType::Symlink);
            }
            assert_eq!(entry.header().uid()?, 0);
            names.push(name);
        }
        assert_eq!(
            names,
            vec![
                ".dockerignore",
                "link",
                "src",
                "src/nested",
                "src/nested/lib.rs",
                "Dockerfile"
            ]
        );
        Ok(())
    }

    #[tokio::test]
    async fn build_streams_progress_and_tags_the_image() -> TestResult {
        let Some(docker) = docker_or_skip("build_streams_progress_and_tags_the_image").await?
        else {
            return Ok(());
        };
        let image = test_image(&docker).await?;
        assert!(
            image
                .progress
                .iter()
                .any(|line| line.starts_with("Step 1/")),
            "no build progress line arrived: {:?}",
            image.progress
        );
        assert!(docker.image_present(IMAGE_TAG).await?);
        crate::note!(
            "measure: test image build (first in this run, builder cache warm if an earlier \
             run built it): {:?}",
            image.build_time
        );
        Ok(())
    }

    /// Uncached builds of the same context: a fresh `LABEL` before the `COPY`s makes
    /// the engine redo every step. Prints the median; asserts nothing about time.
    #[tokio::test]
    async fn measure_uncached_scratch_image_build() -> TestResult {
        let Some(docker) = docker_or_skip("measure_uncached_scratch_image_build").await? else {
            return Ok(());
        };
        let image = test_image(&docker).await?;
        let nonce = unique_project("measure");
        let mut samples = Vec::new();
        for round in 0..3 {
            let dockerfile = format!("Dockerfile.{nonce}.{round}");
            fs::write(
                image.context.join(&dockerfile),
                format!(
                    "FROM scratch\nLABEL fleet.test.nonce={nonce}-{round}\nCOPY helper /helper\n\
                     COPY portfwd /portfwd\nENTRYPOINT [\"/helper\"]\n"
                ),
            )?;
            let build = ImageBuild {
                context: image.context.clone(),
                dockerfile: dockerfile.clone(),
                args: BTreeMap::new(),
            };
            let tag = format!("fleet-test/measure:{nonce}-{round}");
            let started = Instant::now();
            let built = docker
                .build_image(&build, &tag, test_labels(), |_| {})
                .await;
            samples.push(started.elapsed());
            let _ = fs::remove_file(image.context.join(&dockerfile));
            let removed = docker
                .client
                .remove_image(
                    &tag,
                    Some(bollard::query_parameters::RemoveImageOptions {
                        force: true,
                        ..Default::default()
                    }),
                    None,
                )
                .await;
            built?;
            removed?;
        }
        crate::note!(
            "measure: uncached scratch image build (helper {} KiB): {samples:?}, median {:?}",
            fs::metadata(image.context.join("helper"))?.len() / 1024,
            median(samples.clone())
        );
        Ok(())
    }

    #[tokio::test]
    async fn broken_builds_fail_with_the_engines_message() -> TestResult {
        let Some(docker) = docker_or_skip("broken_builds_fail_with_the_engines_message").await?
        else {
            return Ok(());
        };
        let cases = [
            (
                "FROM scratch\nFLEETBOGUS nothing\n",
                "",
                "unknown instruction",
            ),
            ("FROM scratch\nCOPY missing-file /x\n", "", "missing-file"),
            // The ignored file is not sent, so COPY cannot find it.
            (
                "FROM scratch\nCOPY secret.txt /x\n",
                "secret.txt\n",
                "secret.txt",
            ),
        ];
        let nowhere = ImageBuild {
            context: PathBuf::from("/nonexistent/fleet-test-context"),
            dockerfile: "Dockerfile".into(),
            args: BTreeMap::new(),
        };
        match docker
            .build_image(&nowhere, "fleet-test/nowhere:x", test_labels(), |_| {})
            .await
        {
            Err(ContainerError::Build { reason }) => assert!(
                reason.starts_with("cannot send the build context /nonexistent/fleet-test-context"),
                "{reason}"
            ),
            other => return Err(format!("built from nowhere: {other:?}").into()),
        }
        for (dockerfile, dockerignore, expected) in cases {
            let context = tempfile::tempdir()?;
            fs::write(context.path().join("Dockerfile"), dockerfile)?;
            fs::write(context.path().join(".dockerignore"), dockerignore)?;
            fs::write(context.path().join("secret.txt"), "hunter2")?;
            let build = ImageBuild {
                context: context.path().to_path_buf(),
                dockerfile: "Dockerfile".into(),
                args: BTreeMap::new(),
            };
            let mut progress = Vec::new();
            let tag = format!("fleet-test/broken:{}", unique_project("broken"));
            let result = docker
                .build_image(&build, &tag, test_labels(), |line| {
                    progress.push(line.to_string())
                })
                .await;
            match result {
                Err(ContainerError::Build { reason }) => {
                    assert!(reason.contains(expected), "{expected:?} not in {reason:?}");
                    assert!(
                        progress.iter().any(|line| line.contains(expected)),
                        "the error went to progress too: {progress:?}"
                    );
                }
                other => return Err(format!("{dockerfile:?} built: {other:?}").into()),
            }
            assert!(!docker.image_present(&tag).await?);
        }
        Ok(())
    }
}
