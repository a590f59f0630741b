//! The part of the TFLite flatbuffer schema (`tensorflow/lite/schema/schema.fbs`) that the
//! importer reads, as typed views over the `flatbuffers` crate.
//!
//! A flatbuffer table stores field `i` at the vtable slot `4 + 2 * i`. Every view here is
//! reached only through [`model`], which runs the crate's verifier over the whole buffer with
//! these same field types first (bounds, alignment, offsets, UTF-8, depth); reading a verified
//! field is then sound, which is what the `unsafe` accessors rely on. Union members
//! (`builtin_options`) are verified only for the [`OptionTable`]s, and read only after their
//! type byte says which one they are.
//!
//! Writers omit scalars equal to their schema default, so an accessor's `None` means the
//! default (`TensorType` FLOAT32 = 0, indices 0, dilation 1, ...): callers supply it.

use flatbuffers::{Follow, ForwardsUOffset, InvalidFlatbuffer, Table, Vector, Verifiable, Verifier, VerifierOptions};

/// Declares a table view: a verifier over the listed fields and one accessor per field.
macro_rules! fb_table {
    ($name:ident { $($field:ident : $ty:ty = $slot:expr),* $(,)? } $(verify_also $extra:ident)?) => {
        #[derive(Clone, Copy)]
        pub struct $name<'a> {
            tab: Table<'a>,
        }
        impl<'a> Follow<'a> for $name<'a> {
            type Inner = $name<'a>;
            unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
                // SAFETY: forwarded from the caller's contract (a verified table position).
                $name { tab: unsafe { Table::new(buf, loc) } }
            }
        }
        impl<'a> Verifiable for $name<'a> {
            fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
                let t = v.visit_table(pos)? $(.visit_field::<$ty>(stringify!($field), $slot, false)?)*;
                $(let t = $extra(t)?;)?
                t.finish();
                Ok(())
            }
        }
        impl<'a> $name<'a> {
            $(
                pub fn $field(&self) -> Option<<$ty as Follow<'a>>::Inner> {
                    // SAFETY: the buffer was verified by `model` with this field's type.
                    unsafe { self.tab.get::<$ty>($slot, None) }
                }
            )*
        }
    };
}

type Vec32<'a> = ForwardsUOffset<Vector<'a, i32>>;
type VecOf<'a, T> = ForwardsUOffset<Vector<'a, ForwardsUOffset<T>>>;
type Str<'a> = ForwardsUOffset<&'a str>;

fb_table!(Model {
    version: u32 = 4,
    operator_codes: VecOf<'a, OperatorCode<'a>> = 6,
    subgraphs: VecOf<'a, SubGraph<'a>> = 8,
    description: Str<'a> = 10,
    buffers: VecOf<'a, Buffer<'a>> = 12,
    metadata: VecOf<'a, Metadata<'a>> = 16,
});
fb_table!(Metadata { name: Str<'a> = 4, buffer: u32 = 6 });
fb_table!(OperatorCode { deprecated_builtin_code: i8 = 4, custom_code: Str<'a> = 6, version: i32 = 8, builtin_code: i32 = 10 });
fb_table!(SubGraph {
    tensors: VecOf<'a, TensorDef<'a>> = 4,
    inputs: Vec32<'a> = 6,
    outputs: Vec32<'a> = 8,
    operators: VecOf<'a, Operator<'a>> = 10,
    name: Str<'a> = 12,
});
fb_table!(TensorDef {
    shape: Vec32<'a> = 4,
    tensor_type: i8 = 6,
    buffer: u32 = 8,
    name: Str<'a> = 10,
    quantization: ForwardsUOffset<QuantizationParameters<'a>> = 12,
});
fb_table!(QuantizationParameters {
    scale: ForwardsUOffset<Vector<'a, f32>> = 8,
    zero_point: ForwardsUOffset<Vector<'a, i64>> = 10,
    quantized_dimension: i32 = 16,
});
fb_table!(Operator {
    opcode_index: u32 = 4,
    inputs: Vec32<'a> = 6,
    outputs: Vec32<'a> = 8,
    builtin_options_type: u8 = 10,
} verify_also verify_builtin_options);
fb_table!(Buffer { data: ForwardsUOffset<Vector<'a, u8>> = 4, offset: u64 = 6, size: u64 = 8 });
fb_table!(Conv2DOptions {
    padding: i8 = 4,
    stride_w: i32 = 6,
    stride_h: i32 = 8,
    fused_activation_function: i8 = 10,
    dilation_w_factor: i32 = 12,
    dilation_h_factor: i32 = 14,
});
fb_table!(DepthwiseConv2DOptions {
    padding: i8 = 4,
    stride_w: i32 = 6,
    stride_h: i32 = 8,
    depth_multiplier: i32 = 10,
    fused_activation_function: i8 = 12,
    dilation_w_factor: i32 = 14,
    dilation_h_factor: i32 = 16,
});
fb_table!(Pool2DOptions {
    padding: i8 = 4,
    stride_w: i32 = 6,
    stride_h: i32 = 8,
    filter_width: i32 = 10,
    filter_height: i32 = 12,
    fused_activation_function: i8 = 14,
});
fb_table!(FullyConnectedOptions { fused_activation_function: i8 = 4, weights_format: i8 = 6, keep_num_dims: bool = 8 });
fb_table!(AddOptions { fused_activation_function: i8 = 4 });
fb_table!(MulOptions { fused_activation_function: i8 = 4 });
fb_table!(ConcatenationOptions { axis: i32 = 4, fused_activation_function: i8 = 6 });
fb_table!(ReducerOptions { keep_dims: bool = 4 });
fb_table!(SoftmaxOptions { beta: f32 = 4 });

/// Slot of `Operator.builtin_options` (the union's value; its type byte is at slot 10).
const BUILTIN_OPTIONS: u16 = 12;

/// A `BuiltinOptions` union member the importer reads, with its union type.
pub trait OptionTable<'a>: Follow<'a, Inner = Self> + Verifiable + 'a {
    const KIND: u8;
    const NAME: &'static str;
}
macro_rules! option_tables {
    ($($t:ident = $kind:expr),* $(,)?) => {
        $(impl<'a> OptionTable<'a> for $t<'a> {
            const KIND: u8 = $kind;
            const NAME: &'static str = stringify!($t);
        })*
        /// Union types whose tables the verifier checks (the others are never read).
        const OPTION_TYPES: &[u8] = &[$($kind),*];
        fn verify_option(key: u8, v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
            match key {
                $($kind => v.verify_union_variant::<ForwardsUOffset<$t>>(stringify!($t), pos),)*
                _ => Ok(()),
            }
        }
    };
}
option_tables!(
    Conv2DOptions = 1,
    DepthwiseConv2DOptions = 2,
    Pool2DOptions = 5,
    FullyConnectedOptions = 8,
    SoftmaxOptions = 9,
    ConcatenationOptions = 10,
    AddOptions = 11,
    MulOptions = 21,
    ReducerOptions = 27,
);

fn verify_builtin_options<'v, 'o, 'b>(
    t: flatbuffers::TableVerifier<'v, 'o, 'b>,
) -> Result<flatbuffers::TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
    t.visit_union::<u8, _>("builtin_options_type", 10, "builtin_options", BUILTIN_OPTIONS, false, verify_option)
}

impl<'a> Operator<'a> {
    /// The builtin options, if the union holds member `T`.
    pub fn options<T: OptionTable<'a>>(&self) -> Option<T> {
        if self.builtin_options_type() != Some(T::KIND) || !OPTION_TYPES.contains(&T::KIND) {
            return None;
        }
        // SAFETY: the union value was verified as `T` because its type byte is `T::KIND`.
        unsafe { self.tab.get::<ForwardsUOffset<T>>(BUILTIN_OPTIONS, None) }
    }
}

impl OperatorCode<'_> {
    /// The builtin operator: the larger of the deprecated 8-bit code and the 32-bit one
    /// (files from before schema v3a carry only the first; newer ones set it to 127 for
    /// codes that do not fit).
    pub fn builtin(&self) -> i32 {
        (self.deprecated_builtin_code().unwrap_or(0) as i32).max(self.builtin_code().unwrap_or(0))
    }
}

// TFLite Support's metadata (`tensorflow_lite_support/metadata/metadata_schema.fbs`, file
// identifier "M001"): the flatbuffer in the buffer of the model's "TFLITE_METADATA" entry.
fb_table!(ModelMetadata {
    name: Str<'a> = 4,
    description: Str<'a> = 6,
    version: Str<'a> = 8,
    subgraph_metadata: VecOf<'a, SubGraphMetadata<'a>> = 10,
    author: Str<'a> = 12,
    license: Str<'a> = 14,
    associated_files: VecOf<'a, AssociatedFile<'a>> = 16,
});
fb_table!(SubGraphMetadata {
    name: Str<'a> = 4,
    input_tensor_metadata: VecOf<'a, TensorMetadata<'a>> = 8,
    output_tensor_metadata: VecOf<'a, TensorMetadata<'a>> = 10,
    associated_files: VecOf<'a, AssociatedFile<'a>> = 12,
});
fb_table!(TensorMetadata {
    name: Str<'a> = 4,
    process_units: VecOf<'a, ProcessUnit<'a>> = 12,
    associated_files: VecOf<'a, AssociatedFile<'a>> = 16,
});
fb_table!(ProcessUnit { options_type: u8 = 4 } verify_also verify_process_options);
fb_table!(NormalizationOptions { mean: ForwardsUOffset<Vector<'a, f32>> = 4, std: ForwardsUOffset<Vector<'a, f32>> = 6 });
fb_table!(AssociatedFile { name: Str<'a> = 4, description: Str<'a> = 6, file_type: i8 = 8, locale: Str<'a> = 10 });

/// `ProcessUnitOptions` member NormalizationOptions (the only one read).
const NORMALIZATION_OPTIONS: u8 = 1;

fn verify_process_options<'v, 'o, 'b>(
    t: flatbuffers::TableVerifier<'v, 'o, 'b>,
) -> Result<flatbuffers::TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
    t.visit_union::<u8, _>("options_type", 4, "options", 6, false, |key, v, pos| match key {
        NORMALIZATION_OPTIONS => {
            v.verify_union_variant::<ForwardsUOffset<NormalizationOptions>>("NormalizationOptions", pos)
        }
        _ => Ok(()),
    })
}

impl<'a> ProcessUnit<'a> {
    /// The normalization, if this unit is one.
    pub fn normalization(&self) -> Option<NormalizationOptions<'a>> {
        if self.options_type() != Some(NORMALIZATION_OPTIONS) {
            return None;
        }
        // SAFETY: the union value was verified as NormalizationOptions (its type byte).
        unsafe { self.tab.get::<ForwardsUOffset<NormalizationOptions>>(6, None) }
    }
}

/// Verifies `bytes` as TFLite Support metadata and returns its root table.
pub fn model_metadata(bytes: &[u8]) -> Result<ModelMetadata<'_>, InvalidFlatbuffer> {
    let opts = VerifierOptions { max_apparent_size: 1 << 30, ..VerifierOptions::default() };
    flatbuffers::root_with_opts::<ModelMetadata>(&opts, bytes)
}

/// Verifies `bytes` as a TFLite model and returns its root table.
pub fn model(bytes: &[u8]) -> Result<Model<'_>, InvalidFlatbuffer> {
    // Model files hold a few hundred tables; the default limits allow far more. The apparent
    // size bound stops a file from making the verifier revisit shared vectors endlessly.
    let opts = VerifierOptions { max_apparent_size: 1 << 30, ..VerifierOptions::default() };
    flatbuffers::root_with_opts::<Model>(&opts, bytes)
}
