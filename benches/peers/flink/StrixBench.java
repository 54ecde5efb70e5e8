// FlinkCEP side of the peer comparison (benches/peers/flink.sh): the rule of
// examples/rules/bench3.cep written with FlinkCEP's Pattern API, run on the events of a Strix tape
// exported as CSV (`strix tape export --format csv`).
//
// Input: the CSV file (columns located by the header: seq, type, ts, account, qty). Output: one
// line per match (`o.seq c.seq t.seq`) in the --matches file, and one JSON line on stdout with the
// event count, the match count, the elapsed time and the throughput.
//
// The events are loaded into primitive arrays before the job starts; the job's source is
// `fromSequence(0, n - 1)` mapped to event objects from those arrays (the mini cluster runs in this
// JVM), so file reading and CSV parsing are not part of the measured time. Elapsed time runs from
// the first record the source emits to the end of the job (`execute` returned, every match
// reported after the final watermark), which excludes JVM and mini cluster start-up.
//
// Semantics (see benches/peers/README.md): parallelism 1, event time with monotonous watermarks,
// keyed by account, `followedBy` (skip till next match), no skip after match (every match), and
// timestamps in the tape's nanoseconds. FlinkCEP prunes a partial match once
// `now - start >= window`, so `within` gets 2 s + 1 ns to reproduce Strix's inclusive
// `last.ts - first.ts <= 2s`.

import java.io.BufferedReader;
import java.io.FileReader;
import java.io.IOException;
import java.io.PrintWriter;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.eventtime.SerializableTimestampAssigner;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.cep.CEP;
import org.apache.flink.cep.functions.PatternProcessFunction;
import org.apache.flink.cep.nfa.aftermatch.AfterMatchSkipStrategy;
import org.apache.flink.cep.pattern.Pattern;
import org.apache.flink.cep.pattern.conditions.SimpleCondition;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.util.Collector;

public class StrixBench {
    static final byte ORDER = 0;
    static final byte CANCEL = 1;
    static final byte TRADE = 2;
    static final byte OTHER = 3;

    /** One tape event with the fields the pattern reads (a Flink POJO). */
    public static class Ev {
        public long seq;
        public long ts;
        public byte type;
        public int account;
        public double qty;

        public Ev() {}
    }

    // Columns of the loaded tape, shared with the job's operators (same JVM).
    static long[] seqs;
    static long[] tss;
    static byte[] types;
    static int[] accounts;
    static double[] qtys;
    static int count;

    static volatile long firstRecordNanos;
    static final List<long[]> MATCHES = new ArrayList<>();

    static void load(String path) throws IOException {
        int cap = 1 << 20;
        seqs = new long[cap];
        tss = new long[cap];
        types = new byte[cap];
        accounts = new int[cap];
        qtys = new double[cap];
        Map<String, Integer> accountIds = new HashMap<>();
        try (BufferedReader r = new BufferedReader(new FileReader(path), 1 << 20)) {
            String[] header = r.readLine().split(",", -1);
            int cSeq = col(header, "seq"), cType = col(header, "type"), cTs = col(header, "ts");
            int cAccount = col(header, "account"), cQty = col(header, "qty");
            String line;
            while ((line = r.readLine()) != null) {
                // Fields are plain (symbols, numbers, enum names): no quoting in these columns.
                String[] f = line.split(",", -1);
                if (count == seqs.length) {
                    int n = count * 2;
                    seqs = java.util.Arrays.copyOf(seqs, n);
                    tss = java.util.Arrays.copyOf(tss, n);
                    types = java.util.Arrays.copyOf(types, n);
                    accounts = java.util.Arrays.copyOf(accounts, n);
                    qtys = java.util.Arrays.copyOf(qtys, n);
                }
                seqs[count] = Long.parseLong(f[cSeq]);
                tss[count] = Long.parseLong(f[cTs]);
                switch (f[cType]) {
                    case "Order": types[count] = ORDER; break;
                    case "Cancel": types[count] = CANCEL; break;
                    case "Trade": types[count] = TRADE; break;
                    default: types[count] = OTHER;
                }
                accounts[count] = accountIds.computeIfAbsent(f[cAccount], k -> accountIds.size());
                qtys[count] = f[cQty].isEmpty() ? Double.NaN : Double.parseDouble(f[cQty]);
                count++;
            }
        }
    }

    static int col(String[] header, String name) {
        for (int i = 0; i < header.length; i++) {
            if (header[i].equals(name)) {
                return i;
            }
        }
        throw new IllegalArgumentException("CSV has no column " + name);
    }

    /** Row index to event, from the loaded columns. */
    public static class ToEvent implements MapFunction<Long, Ev> {
        @Override
        public Ev map(Long index) {
            int i = (int) (long) index;
            if (i == 0) {
                firstRecordNanos = System.nanoTime();
            }
            Ev e = new Ev();
            e.seq = seqs[i];
            e.ts = tss[i];
            e.type = types[i];
            e.account = accounts[i];
            e.qty = qtys[i];
            return e;
        }
    }

    public static class ByAccount implements KeySelector<Ev, Integer> {
        @Override
        public Integer getKey(Ev e) {
            return e.account;
        }
    }

    public static class EventTime implements SerializableTimestampAssigner<Ev> {
        @Override
        public long extractTimestamp(Ev e, long recordTimestamp) {
            return e.ts;
        }
    }

    /** Records each match's sequence numbers (parallelism 1: one caller). */
    public static class Record extends PatternProcessFunction<Ev, Long> {
        @Override
        public void processMatch(Map<String, List<Ev>> match, Context ctx, Collector<Long> out) {
            long[] m = {
                match.get("o").get(0).seq, match.get("c").get(0).seq, match.get("t").get(0).seq
            };
            synchronized (MATCHES) {
                MATCHES.add(m);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        String csv = null;
        String matchesPath = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--csv": csv = args[++i]; break;
                case "--matches": matchesPath = args[++i]; break;
                default: throw new IllegalArgumentException("unknown argument " + args[i]);
            }
        }
        if (csv == null) {
            throw new IllegalArgumentException("usage: StrixBench --csv FILE [--matches FILE]");
        }
        long loadStart = System.nanoTime();
        load(csv);
        double loadS = (System.nanoTime() - loadStart) / 1e9;

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(1);

        Pattern<Ev, Ev> pattern =
                Pattern.<Ev>begin("o", AfterMatchSkipStrategy.noSkip())
                        .where(SimpleCondition.of(e -> e.type == ORDER && e.qty >= 5000))
                        .followedBy("c")
                        .where(SimpleCondition.of(e -> e.type == CANCEL))
                        .followedBy("t")
                        .where(SimpleCondition.of(e -> e.type == TRADE && e.qty < 1000))
                        // Units are the tape's nanoseconds: 2 s + 1 ns, see the header comment.
                        .within(Duration.ofMillis(2_000_000_001L));

        var events =
                env.fromSequence(0, count - 1)
                        .map(new ToEvent())
                        .assignTimestampsAndWatermarks(
                                WatermarkStrategy.<Ev>forMonotonousTimestamps()
                                        .withTimestampAssigner(new EventTime()));
        CEP.pattern(events.keyBy(new ByAccount()), pattern)
                .inEventTime()
                .process(new Record())
                .sinkTo(new DiscardingSink<>());

        env.execute("strix-bench3");
        long end = System.nanoTime();
        double elapsed = (end - firstRecordNanos) / 1e9;

        if (matchesPath != null) {
            try (PrintWriter w = new PrintWriter(matchesPath)) {
                for (long[] m : MATCHES) {
                    w.println(m[0] + " " + m[1] + " " + m[2]);
                }
            }
        }
        System.out.printf(
                "{\"peer\":\"flinkcep\",\"events\":%d,\"matches\":%d,\"elapsed_s\":%.6f,"
                        + "\"events_per_s\":%.1f,\"load_s\":%.3f,\"parallelism\":1}%n",
                count, MATCHES.size(), elapsed, count / elapsed, loadS);
    }
}
