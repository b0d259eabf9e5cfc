import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;

/**
 * Waits until a Kafka broker answers a metadata request, so scripts/kafka.sh
 * can tell "a Kafka broker" from "something listening on the port".
 * Usage: KafkaProbe bootstrap timeoutMs. Exit 0 when answered, 1 otherwise.
 */
public final class KafkaProbe {
  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    long deadline = System.currentTimeMillis() + Long.parseLong(args[1]);
    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "2000");
    props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "2000");
    props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
    String last = "no answer";
    try (Admin admin = Admin.create(props)) {
      while (System.currentTimeMillis() < deadline) {
        try {
          var cluster = admin.describeCluster(new DescribeClusterOptions().timeoutMs(2000));
          int brokers = cluster.nodes().get(3, TimeUnit.SECONDS).size();
          System.out.println("cluster " + cluster.clusterId().get(3, TimeUnit.SECONDS) + ", " + brokers + " broker(s)");
          return;
        } catch (Exception e) {
          last = e.getCause() != null ? e.getCause().getMessage() : e.getMessage();
          Thread.sleep(250);
        }
      }
    }
    System.err.println(last);
    System.exit(1);
  }
}
