//! Progress bars on a terminal: images (classify, features, eval), training epochs and
//! downloads. Drawn by indicatif with the `progress` feature (on in the default build); without
//! it, or when `show` is false, a [`Bar`] draws nothing and costs nothing.

/// A progress bar, or nothing.
#[derive(Debug)]
pub struct Bar {
    #[cfg(feature = "progress")]
    inner: indicatif::ProgressBar,
}

impl Bar {
    /// A bar that draws nothing.
    pub fn hidden() -> Bar {
        Bar {
            #[cfg(feature = "progress")]
            inner: indicatif::ProgressBar::hidden(),
        }
    }

    #[cfg(feature = "progress")]
    fn styled(inner: indicatif::ProgressBar, template: &str) -> Bar {
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            inner.set_style(style.progress_chars("=> "));
        }
        Bar { inner }
    }

    /// Images done of `total`, with images per second and the time left.
    pub fn images(total: usize, show: bool) -> Bar {
        #[cfg(feature = "progress")]
        if show {
            let inner = indicatif::ProgressBar::new(total as u64);
            return Bar::styled(inner, "{bar:40} {pos}/{len} images  {per_sec}  eta {eta}");
        }
        let _ = (total, show);
        Bar::hidden()
    }

    /// One training epoch: images, speed, and a message (the running loss).
    pub fn epoch(total: usize, show: bool, epoch: usize, epochs: usize) -> Bar {
        #[cfg(feature = "progress")]
        if show {
            let inner = indicatif::ProgressBar::new(total as u64);
            inner.set_prefix(format!("{epoch}/{epochs}"));
            return Bar::styled(inner, "epoch {prefix} {bar:30} {pos}/{len}  {per_sec}  eta {eta}  {msg}");
        }
        let _ = (total, show, epoch, epochs);
        Bar::hidden()
    }

    /// A download of `total` bytes (a spinner when the size is unknown), starting at `start`.
    pub fn bytes(total: Option<u64>, start: u64, label: &str, show: bool) -> Bar {
        #[cfg(feature = "progress")]
        if show {
            let bar = match total {
                Some(t) => Bar::styled(
                    indicatif::ProgressBar::new(t),
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                ),
                None => Bar::styled(indicatif::ProgressBar::new_spinner(), "{msg} {spinner} {bytes} {bytes_per_sec}"),
            };
            bar.inner.set_message(label.to_string());
            bar.inner.set_position(start);
            return bar;
        }
        let _ = (total, start, label, show);
        Bar::hidden()
    }

    pub fn inc(&self, n: u64) {
        #[cfg(feature = "progress")]
        self.inner.inc(n);
        let _ = n;
    }

    pub fn set_position(&self, n: u64) {
        #[cfg(feature = "progress")]
        self.inner.set_position(n);
        let _ = n;
    }

    pub fn set_message(&self, message: String) {
        #[cfg(feature = "progress")]
        self.inner.set_message(message);
        let _ = message;
    }

    /// Prints a line above the bar (the bar is redrawn below it), so the two never interleave.
    pub fn println(&self, line: &str) {
        #[cfg(feature = "progress")]
        if !self.inner.is_hidden() {
            self.inner.println(line);
            return;
        }
        eprintln!("{line}");
    }

    /// Removes the bar from the terminal.
    pub fn finish_and_clear(&self) {
        #[cfg(feature = "progress")]
        self.inner.finish_and_clear();
    }

    /// Stops the bar where it is, leaving it on the terminal (a failed download).
    pub fn abandon(&self) {
        #[cfg(feature = "progress")]
        self.inner.abandon();
    }
}
