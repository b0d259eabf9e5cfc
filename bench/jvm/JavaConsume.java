import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * The client's ceiling: one Java consumer thread reads the whole topic from its start and parses each value,
 * then prints events/s, from before its first request to its last record, as JSON; exits 1 after 600 s.
 *
 * <pre>java -cp CLASSPATH JavaConsume BOOTSTRAP TOPIC EVENTS</pre>
 */
public final class JavaConsume {
  public static void main(String[] args) {
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    long events = Long.parseLong(args[2]);
    // From before the first request, as the kafkajs yardstick is timed from before it connects.
    long started = System.nanoTime();
    long deadline = started + 600_000_000_000L;
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
      List<TopicPartition> partitions = consumer.partitionsFor(args[1]).stream()
          .map(p -> new TopicPartition(p.topic(), p.partition()))
          .collect(Collectors.toList());
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      long seen = 0;
      long amount = 0;
      while (seen < events) {
        if (System.nanoTime() > deadline) {
          System.err.println("JavaConsume: only " + seen + " of " + events + " events in 600 s");
          System.exit(1);
        }
        for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(500))) {
          amount += Purchases.amount(record.value());
          seen++;
        }
      }
      double seconds = (System.nanoTime() - started) / 1e9;
      System.out.println("{\"rate\": " + Math.round(seen / seconds) + ", \"amount\": " + amount + "}");
    }
  }
}
