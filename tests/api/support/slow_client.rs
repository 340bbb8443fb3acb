//! A hostile HTTP/1.1 client on a raw TCP socket: it sends a request head and part of the body
//! it announced, then stalls, holding the connection open the way a slow-loris uploader does.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The form part boundary of [`multipart_head`].
pub const BOUNDARY: &str = "stalled-boundary-7f3a";

/// How the announced body is framed.
pub enum Framing {
    /// `Content-Length: n`, of which only the sent part ever arrives.
    Length(usize),
    /// `Transfer-Encoding: chunked`: one chunk of the sent part, never the last chunk.
    Chunked,
}

/// A request whose body never finishes.
pub struct StalledRequest {
    stream: TcpStream,
}

/// The answer read from the socket, and whether the server closed the connection after it.
pub struct Answer {
    /// When the whole answer had arrived.
    pub at: Instant,
    pub status: u16,
    pub head: String,
    pub body: String,
    pub closed: bool,
}

impl StalledRequest {
    /// Connects to `address` (`http://host:port`), writes the head and `sent`, then stops.
    pub async fn open(
        address: &str,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        framing: Framing,
        sent: &[u8],
    ) -> Self {
        let host = address.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).await.expect("connect");
        let framing_header = match framing {
            Framing::Length(n) => format!("Content-Length: {n}"),
            Framing::Chunked => "Transfer-Encoding: chunked".to_owned(),
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\n{framing_header}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        match framing {
            Framing::Length(_) => stream.write_all(sent).await.unwrap(),
            Framing::Chunked => {
                stream
                    .write_all(format!("{:x}\r\n", sent.len()).as_bytes())
                    .await
                    .unwrap();
                stream.write_all(sent).await.unwrap();
                stream.write_all(b"\r\n").await.unwrap();
            }
        }
        stream.flush().await.unwrap();
        Self { stream }
    }

    /// Waits up to `bound` for a complete answer; `None` if none arrived in time. Then waits up
    /// to `bound` again to see whether the server closes the connection.
    pub async fn answer_within(mut self, bound: Duration) -> Option<Answer> {
        let deadline = Instant::now() + bound;
        let mut received = Vec::new();
        let mut buf = [0u8; 8192];
        let (head_end, body_len) = loop {
            if let Some(end) = find(&received, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if received.len() >= end + 4 + len {
                    break (end, len);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            }
        };
        let at = Instant::now();
        let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
        let body =
            String::from_utf8_lossy(&received[head_end + 4..head_end + 4 + body_len]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let closed = loop {
            match tokio::time::timeout(bound, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => continue,
                Err(_) => break false,
            }
        };
        Some(Answer {
            at,
            status,
            head,
            body,
            closed,
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The start of a creative upload body: a complete `meta` part, then the head of the `file`
/// part and `file_prefix` of its bytes (the rest, and the closing boundary, never come).
pub fn multipart_head(file_prefix: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"meta\"\r\n\r\n\
         {{\"headline\": \"Stalled\"}}\r\n--{BOUNDARY}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"ad.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file_prefix);
    body
}

pub fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}
