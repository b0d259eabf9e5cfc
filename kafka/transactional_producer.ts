/**
 * The changelog's transactional producer: @platformatic/kafka's `Producer`,
 * speaking AddPartitionsToTxn as a client does.
 *
 * Versions 4 and up of AddPartitionsToTxn are the brokers' own (KIP-890):
 * Kafka authorizes them only for a principal allowed ClusterAction, which no
 * client is granted, and answers CLUSTER_AUTHORIZATION_FAILED. The client
 * picks the newest version the broker lists, so without this every changelog
 * write failed on a cluster that enforces ACLs (tests/secured shows it). The
 * request is the same up to version 3, and its answer too.
 *
 * @module
 */
import { type apiVersionsV3, type CallbackWithPromise, kListApis, Producer } from "@platformatic/kafka";

type ApiVersionsResponseApi = apiVersionsV3.ApiVersionsResponseApi;

/** The newest AddPartitionsToTxn a client may send. */
const CLIENT_ADD_PARTITIONS_TO_TXN = 3;

/** A `Producer` that never sends AddPartitionsToTxn past version 3. */
export class TransactionalProducer extends Producer {
  override [kListApis](callback: CallbackWithPromise<ApiVersionsResponseApi[]>): void {
    super[kListApis]((error, apis) => {
      callback(
        error,
        apis?.map((api) =>
          api.name === "AddPartitionsToTxn"
            ? { ...api, maxVersion: Math.min(api.maxVersion, CLIENT_ADD_PARTITIONS_TO_TXN) }
            : api
        ),
      );
    });
  }
}
