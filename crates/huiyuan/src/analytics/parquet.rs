//! Parquet input for the analytics commands: the `member_id`, `date` and `amount` columns of a
//! file written by pandas, DuckDB, Spark or our own export, read column by column with the
//! `parquet` crate's typed readers (no Arrow), one row group at a time.
//!
//! What each column may be:
//! - `member_id`: a string, or an integer (read as its decimal digits);
//! - `date`: a DATE, a TIMESTAMP (its UTC date; milli-, micro- or nanoseconds), or an ISO string;
//! - `amount`: a DECIMAL (any scale; more than two decimals must be zeros), an integer (major
//!   units), a string as in CSV, or a floating-point number rounded to the cent — refused when it
//!   is not within a millionth of a cent, so binary noise is absorbed but 0.125 is not.
//!
//! A null, a bad value or an unsupported type stops the read with the row number (1-based, the
//! file's order) and the reason.

use std::collections::HashMap;
use std::path::Path;

use parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as PhysicalType};
use parquet::column::reader::{get_typed_column_reader, ColumnReader};
use parquet::data_type::{
    ByteArray, ByteArrayType, DataType, DoubleType, FixedLenByteArrayType, FloatType, Int32Type, Int64Type,
};
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};
use parquet::schema::types::ColumnDescriptor;
use time::Date;

use super::{parse_amount, parse_date, Loaded};
use crate::AnyError;

/// Whether a file is Parquet: it starts with the magic bytes `PAR1`.
pub fn is_parquet(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PAR1"
}

/// One row group's values of one column, as stored.
enum Values {
    Bytes(Vec<ByteArray>),
    Fixed(Vec<parquet::data_type::FixedLenByteArray>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Bytes(v) => v.len(),
            Values::Fixed(v) => v.len(),
            Values::Int32(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Double(v) => v.len(),
        }
    }
}

/// Reads a whole column of a row group; a null is an error naming its row.
fn read_typed<T: DataType>(
    reader: ColumnReader,
    rows: usize,
    first_row: usize,
    name: &str,
) -> Result<Vec<T::T>, AnyError> {
    let mut typed = get_typed_column_reader::<T>(reader);
    let mut values = Vec::with_capacity(rows);
    let mut levels = Vec::with_capacity(rows);
    let mut read = 0;
    while read < rows {
        let before = values.len();
        let (records, _, _) = typed.read_records(rows - read, Some(&mut levels), None, &mut values)?;
        if records == 0 {
            break;
        }
        // Nullable columns report definition levels: one per record, and a value only for those
        // at the maximum level. Fewer values than records means a null among them.
        if values.len() - before < records {
            let null = levels.iter().position(|&l| l == 0).unwrap_or(0);
            return Err(format!("row {}: {name} is null", first_row + read + null + 1).into());
        }
        levels.clear();
        read += records;
    }
    Ok(values)
}

fn read_column(
    group: &dyn RowGroupReader,
    column: usize,
    first_row: usize,
    name: &str,
) -> Result<Values, AnyError> {
    let rows = group.metadata().num_rows() as usize;
    let reader = group.get_column_reader(column)?;
    Ok(match reader {
        ColumnReader::ByteArrayColumnReader(_) => {
            Values::Bytes(read_typed::<ByteArrayType>(reader, rows, first_row, name)?)
        }
        ColumnReader::FixedLenByteArrayColumnReader(_) => Values::Fixed(read_typed::<FixedLenByteArrayType>(
            reader, rows, first_row, name,
        )?),
        ColumnReader::Int32ColumnReader(_) => {
            Values::Int32(read_typed::<Int32Type>(reader, rows, first_row, name)?)
        }
        ColumnReader::Int64ColumnReader(_) => {
            Values::Int64(read_typed::<Int64Type>(reader, rows, first_row, name)?)
        }
        ColumnReader::FloatColumnReader(_) => {
            Values::Float(read_typed::<FloatType>(reader, rows, first_row, name)?)
        }
        ColumnReader::DoubleColumnReader(_) => {
            Values::Double(read_typed::<DoubleType>(reader, rows, first_row, name)?)
        }
        ColumnReader::BoolColumnReader(_) | ColumnReader::Int96ColumnReader(_) => {
            return Err(format!("column {name} has a type that cannot hold it").into())
        }
    })
}

/// The decimal scale of a column, when it is a DECIMAL.
fn decimal_scale(d: &ColumnDescriptor) -> Option<i32> {
    match d.logical_type_ref() {
        Some(LogicalType::Decimal(dec)) => Some(dec.scale),
        _ => (d.converted_type() == ConvertedType::DECIMAL).then(|| d.type_scale()),
    }
}

/// Nanoseconds per stored unit, when a column is a TIMESTAMP.
fn timestamp_unit(d: &ColumnDescriptor) -> Option<i64> {
    match d.logical_type_ref() {
        Some(LogicalType::Timestamp(t)) => Some(match t.unit {
            TimeUnit::MILLIS => 1_000_000,
            TimeUnit::MICROS => 1_000,
            TimeUnit::NANOS => 1,
        }),
        _ => match d.converted_type() {
            ConvertedType::TIMESTAMP_MILLIS => Some(1_000_000),
            ConvertedType::TIMESTAMP_MICROS => Some(1_000),
            _ => None,
        },
    }
}

fn is_date(d: &ColumnDescriptor) -> bool {
    matches!(d.logical_type_ref(), Some(LogicalType::Date)) || d.converted_type() == ConvertedType::DATE
}

/// Minor units from an unscaled decimal of `scale` decimals.
fn decimal_to_minor(unscaled: i128, scale: i32) -> Option<i64> {
    let v = if scale <= 2 {
        unscaled.checked_mul(10i128.checked_pow((2 - scale) as u32)?)?
    } else {
        let div = 10i128.checked_pow((scale - 2) as u32)?;
        if unscaled % div != 0 {
            return None;
        }
        unscaled / div
    };
    i64::try_from(v).ok()
}

/// A big-endian two's-complement integer of up to 16 bytes (how DECIMALs are stored in bytes).
fn be_i128(bytes: &[u8]) -> Option<i128> {
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 16];
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    Some(i128::from_be_bytes(buf))
}

fn float_to_minor(x: f64) -> Option<i64> {
    let cents = x * 100.0;
    let rounded = cents.round();
    (x.is_finite() && (cents - rounded).abs() <= 1e-6 * rounded.abs().max(1.0) && rounded.abs() < 9e15)
        .then_some(rounded as i64)
}

const EPOCH: Date = time::macros::date!(1970 - 01 - 01);

fn day_from_epoch(days: i64) -> Option<Date> {
    EPOCH.checked_add(time::Duration::days(days))
}

/// Reads a transactions Parquet file into the commands' columns; members are numbered in order
/// of first appearance, as from CSV.
pub fn load_parquet(path: &Path) -> Result<Loaded, AnyError> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = SerializedFileReader::new(file).map_err(|e| format!("{}: {e}", path.display()))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let find = |name: &str| {
        schema
            .columns()
            .iter()
            .position(|c| c.path().parts().len() == 1 && c.name() == name)
            .ok_or_else(|| format!("{}: the file has no `{name}` column", path.display()))
    };
    let (id_col, date_col, amount_col) = (find("member_id")?, find("date")?, find("amount")?);
    let (date_descr, amount_descr) = (schema.column(date_col), schema.column(amount_col));
    let mut out = Loaded {
        ids: Vec::new(),
        member: Vec::new(),
        date: Vec::new(),
        amount: Vec::new(),
    };
    let mut index: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut number = |id: &[u8], ids: &mut Vec<String>| -> u32 {
        if let Some(&n) = index.get(id) {
            return n;
        }
        let n = ids.len() as u32;
        ids.push(String::from_utf8_lossy(id).into_owned());
        index.insert(id.to_vec(), n);
        n
    };
    let mut first_row = 0;
    for g in 0..reader.num_row_groups() {
        let group = reader.get_row_group(g)?;
        let ids = read_column(&*group, id_col, first_row, "member_id")?;
        let dates = read_column(&*group, date_col, first_row, "date")?;
        let amounts = read_column(&*group, amount_col, first_row, "amount")?;
        let rows = ids.len();
        let bad = |i: usize, what: &str| -> AnyError { format!("row {}: {what}", first_row + i + 1).into() };
        match &ids {
            Values::Bytes(v) => {
                for (i, id) in v.iter().enumerate() {
                    if id.data().is_empty() {
                        return Err(bad(i, "member_id is empty"));
                    }
                    let n = number(id.data(), &mut out.ids);
                    out.member.push(n);
                }
            }
            Values::Int32(v) => v
                .iter()
                .for_each(|x| out.member.push(number(x.to_string().as_bytes(), &mut out.ids))),
            Values::Int64(v) => v
                .iter()
                .for_each(|x| out.member.push(number(x.to_string().as_bytes(), &mut out.ids))),
            _ => return Err("member_id must be a string or an integer column".into()),
        }
        let unit = timestamp_unit(&date_descr);
        match (&dates, date_descr.physical_type()) {
            (Values::Int32(v), PhysicalType::INT32) if is_date(&date_descr) => {
                for (i, &d) in v.iter().enumerate() {
                    out.date
                        .push(day_from_epoch(i64::from(d)).ok_or_else(|| bad(i, "date is out of range"))?);
                }
            }
            (Values::Int64(v), PhysicalType::INT64) if unit.is_some() => {
                let per_day = 86_400_000_000_000 / unit.unwrap_or(1);
                for (i, &t) in v.iter().enumerate() {
                    out.date.push(
                        day_from_epoch(t.div_euclid(per_day))
                            .ok_or_else(|| bad(i, "date is out of range"))?,
                    );
                }
            }
            (Values::Bytes(v), _) => {
                for (i, d) in v.iter().enumerate() {
                    let date = parse_date(d.data()).ok_or_else(|| {
                        bad(
                            i,
                            &format!("date {:?} is not YYYY-MM-DD", String::from_utf8_lossy(d.data())),
                        )
                    })?;
                    out.date.push(date);
                }
            }
            _ => return Err("date must be a DATE, a TIMESTAMP or a string column".into()),
        }
        let scale = decimal_scale(&amount_descr);
        let refused = |i: usize| bad(i, "amount is not a number with at most two decimals");
        let mut push = |i: usize, v: Option<i64>| -> Result<(), AnyError> {
            out.amount.push(v.ok_or_else(|| refused(i))?);
            Ok(())
        };
        match &amounts {
            Values::Int32(v) => {
                for (i, &x) in v.iter().enumerate() {
                    push(i, decimal_to_minor(i128::from(x), scale.unwrap_or(0)))?;
                }
            }
            Values::Int64(v) => {
                for (i, &x) in v.iter().enumerate() {
                    push(i, decimal_to_minor(i128::from(x), scale.unwrap_or(0)))?;
                }
            }
            Values::Fixed(v) if scale.is_some() => {
                for (i, x) in v.iter().enumerate() {
                    push(
                        i,
                        be_i128(x.data()).and_then(|u| decimal_to_minor(u, scale.unwrap_or(0))),
                    )?;
                }
            }
            Values::Bytes(v) if scale.is_some() => {
                for (i, x) in v.iter().enumerate() {
                    push(
                        i,
                        be_i128(x.data()).and_then(|u| decimal_to_minor(u, scale.unwrap_or(0))),
                    )?;
                }
            }
            Values::Bytes(v) => {
                for (i, x) in v.iter().enumerate() {
                    push(i, parse_amount(x.data()))?;
                }
            }
            Values::Double(v) => {
                for (i, &x) in v.iter().enumerate() {
                    push(i, float_to_minor(x))?;
                }
            }
            Values::Float(v) => {
                for (i, &x) in v.iter().enumerate() {
                    push(i, float_to_minor(f64::from(x)))?;
                }
            }
            Values::Fixed(_) => return Err("amount must be a number, a DECIMAL or a string column".into()),
        }
        if dates.len() != rows || amounts.len() != rows {
            return Err(format!("row group {g}: the columns have different lengths").into());
        }
        first_row += rows;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_floats_become_exact_minor_units_or_nothing() {
        assert_eq!(decimal_to_minor(12345, 2), Some(12345));
        assert_eq!(decimal_to_minor(123, 0), Some(12300));
        assert_eq!(decimal_to_minor(123450, 3), Some(12345));
        assert_eq!(decimal_to_minor(123456, 3), None);
        assert_eq!(be_i128(&[0xff, 0x85]), Some(-123));
        assert_eq!(be_i128(&[0x00, 0x7b]), Some(123));
        assert_eq!(float_to_minor(19.9), Some(1990));
        assert_eq!(float_to_minor(0.1 + 0.2), Some(30));
        assert_eq!(float_to_minor(-5.0), Some(-500));
        assert_eq!(float_to_minor(0.125), None);
        assert_eq!(float_to_minor(f64::NAN), None);
        assert_eq!(float_to_minor(f64::INFINITY), None);
    }
}
