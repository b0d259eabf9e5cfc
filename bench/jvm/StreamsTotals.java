import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The same aggregation as usershard in Kafka Streams, the way its users would write it: per user, purchases and
 * amount spent, in the default RocksDB store with its compacted changelog, exactly once (v2). Runs until
 * killed, or exits 1 when Kafka Streams fails; the benchmark reads its progress from the group's committed
 * offsets.
 *
 * <pre>java -cp CLASSPATH StreamsTotals BOOTSTRAP TOPIC APPLICATION_ID STATE_DIR</pre>
 */
public final class StreamsTotals {
  public static void main(String[] args) throws InterruptedException {
    Properties props = new Properties();
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[2]);
    props.put(StreamsConfig.STATE_DIR_CONFIG, args[3]);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    StreamsBuilder builder = new StreamsBuilder();
    builder.stream(args[1], Consumed.with(Serdes.String(), Serdes.ByteArray()))
        .groupByKey()
        .aggregate(
            () -> new byte[16],
            (user, value, totals) -> Purchases.add(totals, value),
            Materialized.<String, byte[], KeyValueStore<Bytes, byte[]>>as("totals")
                .withKeySerde(Serdes.String())
                .withValueSerde(Serdes.ByteArray()));
    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    // Kafka Streams shuts its client down on an uncaught error but leaves the JVM running: exit, so that the
    // benchmark sees it at once instead of waiting for a drain that never ends.
    streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.ERROR) {
        System.err.println("StreamsTotals: Kafka Streams failed (" + before + " -> ERROR)");
        Runtime.getRuntime().halt(1);
      }
    });
    CountDownLatch closed = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close();
      closed.countDown();
    }));
    streams.start();
    closed.await();
  }
}
