//! A typed table and its two file forms. CSV for people (amounts as `128.50`, instants in the
//! brand's offset); Parquet for analysts' tools (amounts as DECIMAL(18,2) — exact, never a
//! float —, instants as UTC TIMESTAMP(MILLIS)), written with the `parquet` crate's column
//! writers, which need no Arrow. Both are byte-for-byte the same for the same data.

use std::sync::Arc;

use huiyuan_domain::money::format_minor_units;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{CoreError, Result};

/// A text cell as a spreadsheet will not run it. Excel, LibreOffice and Sheets read a cell
/// that starts with `=`, `+`, `-` or `@` (or a tab or carriage return before one) as a formula,
/// so a member named `=cmd|' /C calc'!A0` would run a command on the analyst's machine ("CSV
/// injection"). Such a cell gets a leading `'`, as OWASP recommends, unless it is a plain
/// number (`-5`, `+8613800138000`): a spreadsheet reads those as numbers, never formulas, and
/// they stay as they were. Numbers in typed columns are never text, so their signs are kept.
pub(crate) fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let triggers = ['=', '+', '-', '@', '\t', '\r'];
    let plain_number = |s: &str| {
        let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
        !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
            && digits.chars().filter(|&c| c == '.').count() <= 1
            && digits.chars().any(|c| c.is_ascii_digit())
    };
    if cell.starts_with(triggers) && !plain_number(cell) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// The values of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    /// Minor units (two decimals).
    Money(Vec<Option<i64>>),
    /// For model outputs (probabilities, expected counts); never money.
    Real(Vec<Option<f64>>),
    Time(Vec<Option<OffsetDateTime>>),
}

impl Values {
    /// Parquet's definition levels of an optional column: 1 where a value is present.
    fn definition_levels(&self) -> Vec<i16> {
        fn present<T>(v: &[Option<T>]) -> Vec<i16> {
            v.iter().map(|x| i16::from(x.is_some())).collect()
        }
        match self {
            Values::Text(v) => present(v),
            Values::Int(v) | Values::Money(v) => present(v),
            Values::Real(v) => present(v),
            Values::Time(v) => present(v),
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::Text(v) => v.len(),
            Values::Int(v) | Values::Money(v) => v.len(),
            Values::Real(v) => v.len(),
            Values::Time(v) => v.len(),
        }
    }
}

/// A named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: &'static str,
    pub values: Values,
}

/// File format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Csv,
    Parquet,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// Columns of equal length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
}

impl Table {
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }

    pub fn write(
        &self,
        format: Format,
        offset: &dyn Fn(OffsetDateTime) -> OffsetDateTime,
    ) -> Result<Vec<u8>> {
        match format {
            Format::Csv => self.csv(offset),
            Format::Parquet => self.parquet(),
        }
    }

    /// CSV with a header; instants shifted by `offset` into the brand's local offset.
    fn csv(&self, offset: &dyn Fn(OffsetDateTime) -> OffsetDateTime) -> Result<Vec<u8>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let failed = |e: csv::Error| CoreError::Corrupt(format!("writing CSV: {e}"));
        w.write_record(self.columns.iter().map(|c| c.name))
            .map_err(failed)?;
        let rfc3339 = time::format_description::well_known::Rfc3339;
        let mut record: Vec<String> = Vec::with_capacity(self.columns.len());
        for i in 0..self.rows() {
            record.clear();
            for c in &self.columns {
                record.push(match &c.values {
                    Values::Text(v) => v[i]
                        .as_deref()
                        .map(spreadsheet_safe)
                        .unwrap_or_default()
                        .into_owned(),
                    Values::Int(v) => v[i].map(|x| x.to_string()).unwrap_or_default(),
                    Values::Money(v) => v[i].map(format_minor_units).unwrap_or_default(),
                    Values::Real(v) => v[i].map(|x| format!("{x:.6}")).unwrap_or_default(),
                    Values::Time(v) => v[i]
                        .map(|t| offset(t).format(&rfc3339).unwrap_or_default())
                        .unwrap_or_default(),
                });
            }
            w.write_record(&record).map_err(failed)?;
        }
        w.into_inner()
            .map_err(|e| CoreError::Corrupt(format!("writing CSV: {e}")))
    }

    fn parquet(&self) -> Result<Vec<u8>> {
        let failed = |e: parquet::errors::ParquetError| CoreError::Corrupt(format!("writing Parquet: {e}"));
        let mut fields = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let (physical, logical) = match &c.values {
                Values::Text(_) => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
                Values::Int(_) => (PhysicalType::INT64, None),
                Values::Money(_) => (PhysicalType::INT64, Some(LogicalType::decimal(2, 18))),
                Values::Real(_) => (PhysicalType::DOUBLE, None),
                Values::Time(_) => (
                    PhysicalType::INT64,
                    Some(LogicalType::timestamp(true, TimeUnit::MILLIS)),
                ),
            };
            let mut builder = Type::primitive_type_builder(c.name, physical)
                .with_repetition(Repetition::OPTIONAL)
                .with_logical_type(logical.clone());
            if let Some(LogicalType::Decimal(d)) = &logical {
                builder = builder.with_precision(d.precision).with_scale(d.scale);
            }
            fields.push(Arc::new(builder.build().map_err(failed)?));
        }
        let schema = Arc::new(
            Type::group_type_builder("export")
                .with_fields(fields)
                .build()
                .map_err(failed)?,
        );
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_created_by("huiyuan".into())
                .build(),
        );
        let mut out = Vec::new();
        let mut writer = SerializedFileWriter::new(&mut out, schema, props).map_err(failed)?;
        let mut group = writer.next_row_group().map_err(failed)?;
        let mut index = 0;
        while let Some(mut column) = group.next_column().map_err(failed)? {
            let values = &self.columns[index].values;
            index += 1;
            let def = values.definition_levels();
            match values {
                Values::Text(v) => {
                    let data: Vec<ByteArray> =
                        v.iter().flatten().map(|s| ByteArray::from(s.as_str())).collect();
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&data, Some(&def), None)
                        .map_err(failed)?;
                }
                Values::Int(v) | Values::Money(v) => {
                    let data: Vec<i64> = v.iter().flatten().copied().collect();
                    column
                        .typed::<Int64Type>()
                        .write_batch(&data, Some(&def), None)
                        .map_err(failed)?;
                }
                Values::Real(v) => {
                    let data: Vec<f64> = v.iter().flatten().copied().collect();
                    column
                        .typed::<DoubleType>()
                        .write_batch(&data, Some(&def), None)
                        .map_err(failed)?;
                }
                Values::Time(v) => {
                    let data: Vec<i64> = v
                        .iter()
                        .flatten()
                        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                        .collect();
                    column
                        .typed::<Int64Type>()
                        .write_batch(&data, Some(&def), None)
                        .map_err(failed)?;
                }
            }
            column.close().map_err(failed)?;
        }
        group.close().map_err(failed)?;
        writer.close().map_err(failed)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    fn sample() -> Table {
        Table {
            columns: vec![
                Column {
                    name: "name",
                    values: Values::Text(vec![Some("張三, \"甲\"".into()), None]),
                },
                Column {
                    name: "paid",
                    values: Values::Money(vec![Some(12_850), Some(-5)]),
                },
                Column {
                    name: "at",
                    values: Values::Time(vec![Some(OffsetDateTime::UNIX_EPOCH), None]),
                },
                Column {
                    name: "p",
                    values: Values::Real(vec![None, Some(0.5)]),
                },
            ],
        }
    }

    /// A name, tag or city that a spreadsheet would run comes out inert; numbers, in typed
    /// columns or as plain text (a phone in E.164), keep their signs.
    #[test]
    fn csv_cells_never_start_a_formula() {
        let hostile = [
            "=cmd|' /C calc'!A0",
            "=1+2",
            "@SUM(1+1)",
            "+1+cmd|x",
            "-2+3",
            "\t=1",
            "\r=1",
        ];
        let mut texts: Vec<Option<String>> = hostile.iter().map(|s| Some((*s).to_owned())).collect();
        texts.extend([
            Some("-5".into()),
            Some("+8613800138000".into()),
            Some("a=b".into()),
        ]);
        let n = texts.len();
        let table = Table {
            columns: vec![
                Column {
                    name: "text",
                    values: Values::Text(texts),
                },
                Column {
                    name: "int",
                    values: Values::Int(vec![Some(-7); n]),
                },
                Column {
                    name: "money",
                    values: Values::Money(vec![Some(-12_850); n]),
                },
            ],
        };
        let csv = table.write(Format::Csv, &|t| t).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_slice());
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        for (row, cell) in rows.iter().zip(hostile) {
            assert_eq!(&row[0], format!("'{cell}"));
        }
        let plain: Vec<&str> = rows[hostile.len()..].iter().map(|r| &r[0]).collect();
        assert_eq!(plain, ["-5", "+8613800138000", "a=b"]);
        assert!(rows.iter().all(|r| &r[1] == "-7" && &r[2] == "-128.50"));
        let report = rejections_report(&hostile);
        for row in csv::Reader::from_reader(report.as_bytes()).records() {
            let row = row.unwrap();
            assert!(row[1].starts_with('\'') && row[2].starts_with('\''), "{report}");
        }
    }

    fn rejections_report(reasons: &[&str]) -> String {
        let rejected: Vec<crate::files::import::Rejection> = reasons
            .iter()
            .enumerate()
            .map(|(i, r)| crate::files::import::Rejection {
                line: i as u64 + 2,
                field: Some((*r).to_owned()),
                reason: (*r).to_owned(),
            })
            .collect();
        String::from_utf8(crate::files::import::rejections_csv(&rejected).unwrap()).unwrap()
    }

    #[test]
    fn csv_quotes_and_formats() {
        let plus8 = |t: OffsetDateTime| t.to_offset(time::macros::offset!(+8));
        let csv = String::from_utf8(sample().write(Format::Csv, &plus8).unwrap()).unwrap();
        assert_eq!(
            csv,
            "name,paid,at,p\n\"張三, \"\"甲\"\"\",128.50,1970-01-01T08:00:00+08:00,\n,-0.05,,0.500000\n"
        );
    }

    #[test]
    fn parquet_reads_back_with_types() {
        let bytes = sample().write(Format::Parquet, &|t| t).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let rows: Vec<_> = reader.get_row_iter(None).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        let first: Vec<_> = rows[0].get_column_iter().map(|(_, f)| f.clone()).collect();
        assert_eq!(first[0], Field::Str("張三, \"甲\"".into()));
        assert!(matches!(&first[1], Field::Decimal(_)));
        assert_eq!(first[2], Field::TimestampMillis(0));
        assert_eq!(first[3], Field::Null);
    }
}
