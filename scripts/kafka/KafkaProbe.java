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
    long timeoutMs = Long.parseLong(args[1]);
    long deadline = System.currentTimeMillis() + timeoutMs;
    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    // A broker on a loaded machine may take seconds to answer one request: each request may use
    // the whole time limit, or a slow broker would time out on every try and never be recognised.
    props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, Long.toString(timeoutMs));
    props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, Long.toString(timeoutMs));
    props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
    String last = "no answer";
    try (Admin admin = Admin.create(props)) {
      for (long left = timeoutMs; left > 0; left = deadline - System.currentTimeMillis()) {
        try {
          var cluster = admin.describeCluster(new DescribeClusterOptions().timeoutMs((int) left));
          int brokers = cluster.nodes().get(left, TimeUnit.MILLISECONDS).size();
          long rest = Math.max(1, deadline - System.currentTimeMillis());
          System.out.println("cluster " + cluster.clusterId().get(rest, TimeUnit.MILLISECONDS) + ", " + brokers + " broker(s)");
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
