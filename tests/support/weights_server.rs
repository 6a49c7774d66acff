//! A tiny HTTP/1.1 server on 127.0.0.1 (random port, one thread per connection, one request per
//! connection) for the downloader tests, with scripted faults: statuses, dropped bodies, stalls,
//! slow bodies and servers that ignore `Range`. It records every request it saw and stops when
//! dropped; stalls are bounded, so no thread outlives a test by more than their duration.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

/// What to answer.
pub enum Reply {
    /// 200 with the body, or 206 with the rest for `Range: bytes=N-`.
    Body(Vec<u8>),
    /// 200 with the full body whatever the `Range` header says.
    BodyIgnoringRange(Vec<u8>),
    /// Headers announcing the whole body, the first `n` bytes, then the connection closes.
    DropAfter(Vec<u8>, usize),
    /// [`Reply::Body`] sent in chunks of `chunk` bytes with `pause` between them.
    Slow(Vec<u8>, usize, Duration),
    /// A bare status with an empty body.
    Status(u16),
    /// Reads the request and sends nothing for the duration, then closes.
    Stall(Duration),
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// A running server.
pub struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server; `handler` gets each request and its index among all requests so far.
    pub fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let (log, stop) = (log.clone(), stop.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (log, handler) = (log.clone(), handler.clone());
                    thread::spawn(move || serve(stream, &log, &*handler));
                }
            })
        };
        Server { addr, log, stop, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, log: &Mutex<Vec<Request>>, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return, // the wake-up connection of Drop, or a client that gave up
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let path = lines.next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("/").to_string();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_string());
    let request = Request { path, range };
    let index = {
        let mut log = log.lock().unwrap();
        log.push(request.clone());
        log.len() - 1
    };
    let reply = handler(&request, index);
    let _ = respond(&mut stream, &request, reply);
}

fn head(status: &str, len: usize, extra: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n")
}

fn respond(stream: &mut TcpStream, request: &Request, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Body(body) => send_body(stream, request, &body, body.len(), Duration::ZERO),
        Reply::Slow(body, chunk, pause) => send_body(stream, request, &body, chunk, pause),
        Reply::BodyIgnoringRange(body) => {
            stream.write_all(head("200 OK", body.len(), "").as_bytes())?;
            stream.write_all(&body)
        }
        Reply::DropAfter(body, n) => {
            stream.write_all(head("200 OK", body.len(), "").as_bytes())?;
            stream.write_all(&body[..n.min(body.len())])?;
            stream.flush()
            // the stream closes when dropped
        }
        Reply::Status(code) => {
            let reason = match code {
                404 => "Not Found",
                429 => "Too Many Requests",
                500 => "Internal Server Error",
                503 => "Service Unavailable",
                _ => "Status",
            };
            stream.write_all(head(&format!("{code} {reason}"), 0, "").as_bytes())
        }
        Reply::Stall(duration) => {
            thread::sleep(duration);
            Ok(())
        }
    }
}

fn send_body(
    stream: &mut TcpStream,
    request: &Request,
    body: &[u8],
    chunk: usize,
    pause: Duration,
) -> std::io::Result<()> {
    let from = request
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, extra, rest) = match from {
        Some(n) if n >= body.len() => {
            let extra = format!("Content-Range: bytes */{}\r\n", body.len());
            stream.write_all(head("416 Range Not Satisfiable", 0, &extra).as_bytes())?;
            return Ok(());
        }
        Some(n) => (
            "206 Partial Content",
            format!("Content-Range: bytes {n}-{}/{}\r\n", body.len() - 1, body.len()),
            &body[n..],
        ),
        None => ("200 OK", String::new(), body),
    };
    stream.write_all(head(status, rest.len(), &extra).as_bytes())?;
    for piece in rest.chunks(chunk.max(1)) {
        stream.write_all(piece)?;
        stream.flush()?;
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
    Ok(())
}
