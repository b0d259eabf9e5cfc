import java.nio.ByteBuffer;

/**
 * Reads the two numbers a total needs from a {@code UserPurchaseProto} (proto/user_events.proto) off the
 * protobuf wire, as usershard's own reader does: quantity (field 3) and price (field 4).
 */
final class Purchases {
  private Purchases() {}

  /** quantity × price of one record's value; throws on bytes that are not a purchase. */
  static long amount(byte[] value) {
    long quantity = 0;
    long price = 0;
    int pos = 0;
    while (pos < value.length) {
      long tag = 0;
      for (int shift = 0; ; shift += 7) {
        byte b = value[pos++];
        tag |= (long) (b & 0x7f) << shift;
        if (b >= 0) break;
      }
      int field = (int) (tag >>> 3);
      int wire = (int) (tag & 7);
      if (wire == 0) {
        long n = 0;
        for (int shift = 0; ; shift += 7) {
          byte b = value[pos++];
          n |= (long) (b & 0x7f) << shift;
          if (b >= 0) break;
        }
        if (field == 3) quantity = n;
        else if (field == 4) price = n;
      } else if (wire == 2) {
        int length = 0;
        for (int shift = 0; ; shift += 7) {
          byte b = value[pos++];
          length |= (b & 0x7f) << shift;
          if (b >= 0) break;
        }
        pos += length;
      } else {
        throw new IllegalArgumentException("wire type " + wire + " in a purchase");
      }
    }
    return quantity * price;
  }

  /** The totals kept per user: purchases and amount spent, two longs. */
  static byte[] add(byte[] totals, byte[] value) {
    ByteBuffer before = ByteBuffer.wrap(totals);
    return ByteBuffer.allocate(16).putLong(before.getLong(0) + 1).putLong(before.getLong(8) + amount(value)).array();
  }
}
