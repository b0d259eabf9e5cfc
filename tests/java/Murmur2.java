import java.util.HexFormat;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import org.apache.kafka.common.utils.Utils;

/**
 * Prints Kafka's own murmur2 and default partition for each hex-encoded key
 * read from stdin, one "hash partition" line per key. Usage: Murmur2 partitions.
 */
public final class Murmur2 {
  public static void main(String[] args) throws Exception {
    int partitions = Integer.parseInt(args[0]);
    var in = new BufferedReader(new InputStreamReader(System.in));
    var out = new StringBuilder();
    for (String line; (line = in.readLine()) != null; ) {
      byte[] key = HexFormat.of().parseHex(line.trim());
      int hash = Utils.murmur2(key);
      out.append(hash).append(' ').append(Utils.toPositive(hash) % partitions).append('\n');
    }
    System.out.print(out);
  }
}
