//! The pickle opcodes (protocols 0 to 5), with the names Python's `pickletools` gives them.

/// Defines [`Op`] with its byte values and names, and the conversions between them.
macro_rules! opcodes {
    ($($(#[$doc:meta])* $op:ident = $byte:expr, $name:literal;)*) => {
        /// One pickle opcode.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub(super) enum Op {
            $($op = $byte,)*
        }

        impl Op {
            /// The opcode of byte `b`, if it is one.
            pub(super) fn from_byte(b: u8) -> Option<Op> {
                match b {
                    $($byte => Some(Op::$op),)*
                    _ => None,
                }
            }

            /// The opcode's name in Python's `pickletools` (`SHORT_BINUNICODE`).
            pub(super) fn name(self) -> &'static str {
                match self {
                    $(Op::$op => $name,)*
                }
            }
        }
    };
}

opcodes! {
    // Protocol 0 and 1.
    Mark = b'(', "MARK";
    Stop = b'.', "STOP";
    Pop = b'0', "POP";
    PopMark = b'1', "POP_MARK";
    Dup = b'2', "DUP";
    Float = b'F', "FLOAT";
    Int = b'I', "INT";
    BinInt = b'J', "BININT";
    BinInt1 = b'K', "BININT1";
    Long = b'L', "LONG";
    BinInt2 = b'M', "BININT2";
    None = b'N', "NONE";
    PersId = b'P', "PERSID";
    BinPersId = b'Q', "BINPERSID";
    Reduce = b'R', "REDUCE";
    String = b'S', "STRING";
    BinString = b'T', "BINSTRING";
    ShortBinString = b'U', "SHORT_BINSTRING";
    Unicode = b'V', "UNICODE";
    BinUnicode = b'X', "BINUNICODE";
    Append = b'a', "APPEND";
    Build = b'b', "BUILD";
    Global = b'c', "GLOBAL";
    Dict = b'd', "DICT";
    EmptyDict = b'}', "EMPTY_DICT";
    Appends = b'e', "APPENDS";
    Get = b'g', "GET";
    BinGet = b'h', "BINGET";
    Inst = b'i', "INST";
    LongBinGet = b'j', "LONG_BINGET";
    List = b'l', "LIST";
    EmptyList = b']', "EMPTY_LIST";
    Obj = b'o', "OBJ";
    Put = b'p', "PUT";
    BinPut = b'q', "BINPUT";
    LongBinPut = b'r', "LONG_BINPUT";
    SetItem = b's', "SETITEM";
    Tuple = b't', "TUPLE";
    EmptyTuple = b')', "EMPTY_TUPLE";
    SetItems = b'u', "SETITEMS";
    BinFloat = b'G', "BINFLOAT";
    // Protocol 2.
    Proto = 0x80, "PROTO";
    NewObj = 0x81, "NEWOBJ";
    Ext1 = 0x82, "EXT1";
    Ext2 = 0x83, "EXT2";
    Ext4 = 0x84, "EXT4";
    Tuple1 = 0x85, "TUPLE1";
    Tuple2 = 0x86, "TUPLE2";
    Tuple3 = 0x87, "TUPLE3";
    NewTrue = 0x88, "NEWTRUE";
    NewFalse = 0x89, "NEWFALSE";
    Long1 = 0x8a, "LONG1";
    Long4 = 0x8b, "LONG4";
    // Protocol 3.
    BinBytes = b'B', "BINBYTES";
    ShortBinBytes = b'C', "SHORT_BINBYTES";
    // Protocol 4.
    ShortBinUnicode = 0x8c, "SHORT_BINUNICODE";
    BinUnicode8 = 0x8d, "BINUNICODE8";
    BinBytes8 = 0x8e, "BINBYTES8";
    EmptySet = 0x8f, "EMPTY_SET";
    AddItems = 0x90, "ADDITEMS";
    FrozenSet = 0x91, "FROZENSET";
    NewObjEx = 0x92, "NEWOBJ_EX";
    StackGlobal = 0x93, "STACK_GLOBAL";
    Memoize = 0x94, "MEMOIZE";
    Frame = 0x95, "FRAME";
    // Protocol 5.
    ByteArray8 = 0x96, "BYTEARRAY8";
    NextBuffer = 0x97, "NEXT_BUFFER";
    ReadonlyBuffer = 0x98, "READONLY_BUFFER";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_names_round_trip() {
        let ops: Vec<Op> = (0..=255u8).filter_map(Op::from_byte).collect();
        assert_eq!(ops.len(), 68);
        assert!(ops.iter().all(|&op| Op::from_byte(op as u8) == Some(op)));
        assert_eq!(Op::from_byte(0x8c).map(Op::name), Some("SHORT_BINUNICODE"));
        assert_eq!(Op::from_byte(b'.'), Some(Op::Stop));
        assert_eq!(Op::from_byte(0xff), None);
    }
}
