//! `GET /media/{token}`: a job's stored output behind a signed, expiring link (checks in
//! `clawgate_core::media`). The file is streamed, never read whole.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::io::AsyncReadExt;

use clawgate_core::media::{MediaError, MediaSigner};

/// Bytes read per chunk.
const CHUNK: usize = 64 * 1024;

/// `GET /media/{token}` → the file, or 403 (forged, expired, wrong channel) / 404 (gone) with a
/// plain-text reason.
pub(crate) async fn get_media(State(media): State<MediaSigner>, Path(token): Path<String>) -> Response {
    serve(&media, &token).await
}

/// The file behind `token`, or the refusal; also reached as `<basePath>/media/{token}` when the
/// web chat lives below a prefix a proxy keeps (see `webchat::media_token`).
pub(crate) async fn serve(media: &MediaSigner, token: &str) -> Response {
    let file = match media.open(token).await {
        Ok(f) => f,
        Err(e) => return refuse(&e),
    };
    let f = match tokio::fs::File::open(&file.path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %file.path.display(), error = %e, "media file vanished before it was served");
            return refuse(&MediaError::NotFound);
        }
    };
    let body = Body::from_stream(stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; CHUNK];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    }));
    let safe_name: String = file.filename.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\').collect();
    let disposition = if file.content_type == "application/octet-stream" { "attachment" } else { "inline" };
    (
        [
            (header::CONTENT_TYPE, file.content_type.to_owned()),
            (header::CONTENT_LENGTH, file.size.to_string()),
            (header::CONTENT_DISPOSITION, format!("{disposition}; filename=\"{safe_name}\"")),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "private, max-age=300".to_owned()),
        ],
        body,
    )
        .into_response()
}

fn refuse(e: &MediaError) -> Response {
    let status = if e.is_forbidden() {
        StatusCode::FORBIDDEN
    } else if matches!(e, MediaError::NotFound) {
        StatusCode::NOT_FOUND
    } else {
        tracing::error!(error = %e, "cannot serve media");
        return (StatusCode::SERVICE_UNAVAILABLE, "media storage unavailable; see the gateway log\n").into_response();
    };
    (status, [(header::CACHE_CONTROL, "no-store")], format!("{e}\n")).into_response()
}
