//! Content negotiation and capped decompression of OTLP/HTTP bodies.

use std::io::Read;

use prost::Message;
use serde::de::DeserializeOwned;

use crate::OtlpError;

/// The wire format of an OTLP body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// The format named by a `Content-Type` header value (parameters such as `charset` ignored).
    ///
    /// # Errors
    /// [`OtlpError::UnsupportedContentType`] for anything but protobuf or JSON.
    pub fn from_content_type(value: Option<&str>) -> Result<Format, OtlpError> {
        let raw = value.unwrap_or("");
        let essence = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
            "application/json" => Ok(Format::Json),
            _ => Err(OtlpError::UnsupportedContentType(raw.to_string())),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// A `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    /// # Errors
    /// [`OtlpError::UnsupportedEncoding`] for encodings other than identity, gzip and zstd.
    pub fn from_header(value: Option<&str>) -> Result<Encoding, OtlpError> {
        let raw = value.unwrap_or("").trim();
        match raw.to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "zstd" => Ok(Encoding::Zstd),
            _ => Err(OtlpError::UnsupportedEncoding(raw.to_string())),
        }
    }
}

/// Inflates `body` into at most `limit` bytes.
///
/// Decompression stops as soon as the output would pass `limit`, so a bomb costs at most
/// `limit + 1` bytes of memory and the time to produce them.
///
/// # Errors
/// [`OtlpError::TooLarge`] past the limit, [`OtlpError::Decompress`] for corrupt input.
pub fn decompress(
    body: bytes::Bytes,
    encoding: Encoding,
    limit: usize,
) -> Result<bytes::Bytes, OtlpError> {
    let (name, reader): (&'static str, Box<dyn Read + '_>) = match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(OtlpError::TooLarge { limit });
            }
            return Ok(body);
        }
        Encoding::Gzip => (
            "gzip",
            Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        ),
        Encoding::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::new(&body[..]).map_err(|e| OtlpError::Decompress {
                    encoding: "zstd",
                    reason: e.to_string(),
                })?;
            ("zstd", Box::new(decoder))
        }
    };
    let mut out = Vec::with_capacity((body.len() * 4).min(limit + 1));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| OtlpError::Decompress {
            encoding: name,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(OtlpError::TooLarge { limit });
    }
    Ok(bytes::Bytes::from(out))
}

/// Decompresses and decodes an OTLP request body of message type `M`.
///
/// # Errors
/// Any [`OtlpError`] about size, encoding or decoding.
pub fn decode_body<M>(
    body: bytes::Bytes,
    format: Format,
    encoding: Encoding,
    limit: usize,
) -> Result<M, OtlpError>
where
    M: Message + Default + DeserializeOwned,
{
    let raw = decompress(body, encoding, limit)?;
    match format {
        Format::Protobuf => Ok(M::decode(raw)?),
        Format::Json => Ok(serde_json::from_slice(&raw)?),
    }
}

/// Encodes a response message in the request's format.
pub fn encode_response<M>(message: &M, format: Format) -> Vec<u8>
where
    M: Message + serde::Serialize,
{
    match format {
        Format::Protobuf => message.encode_to_vec(),
        // Serializing generated OTLP types to a Vec cannot fail.
        Format::Json => serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> bytes::Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).expect("gzip");
        bytes::Bytes::from(enc.finish().expect("gzip"))
    }

    #[test]
    fn a_gzip_bomb_is_cut_off_at_the_limit() {
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 1 << 20);
        let err = decompress(bomb, Encoding::Gzip, 1 << 20).expect_err("bomb");
        assert!(matches!(err, OtlpError::TooLarge { .. }));
    }

    #[test]
    fn bodies_at_the_limit_pass_and_one_byte_more_does_not() {
        let limit = 4096;
        for (len, ok) in [(limit - 1, true), (limit, true), (limit + 1, false)] {
            let data = vec![7u8; len];
            for enc in [Encoding::Identity, Encoding::Gzip, Encoding::Zstd] {
                let body = match enc {
                    Encoding::Identity => bytes::Bytes::from(data.clone()),
                    Encoding::Gzip => gzip(&data),
                    Encoding::Zstd => {
                        bytes::Bytes::from(zstd::encode_all(&data[..], 3).expect("zstd"))
                    }
                };
                assert_eq!(decompress(body, enc, limit).is_ok(), ok, "{enc:?} {len}");
            }
        }
    }

    #[test]
    fn content_types_are_negotiated() {
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")).ok(),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type(Some("application/x-protobuf")).ok(),
            Some(Format::Protobuf)
        );
        assert!(Format::from_content_type(Some("text/plain")).is_err());
        assert!(Format::from_content_type(None).is_err());
        assert!(Encoding::from_header(Some("br")).is_err());
    }
}

#[cfg(test)]
mod json_mapping {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

    #[test]
    fn unknown_json_fields_are_ignored_as_the_spec_requires() {
        let body = br#"{"resourceLogs":[{"futureField":{"a":[1,2]},"scopeLogs":[{"logRecords":[
            {"body":{"stringValue":"x","futureKind":{"nested":true}},"someNewField":42,
             "attributes":[{"key":"k","value":{"intValue":"7","extra":"y"}}]}]}]}]}"#;
        let req: ExportLogsServiceRequest = decode_body(
            bytes::Bytes::from_static(body),
            Format::Json,
            Encoding::Identity,
            1 << 20,
        )
        .expect("unknown fields are ignored");
        let rec = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert!(rec.body.is_some());
        assert_eq!(rec.attributes[0].key, "k");
    }
}
