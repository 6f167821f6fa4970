# bench/plots.gp: the plots bench/run writes under bench/results/.
#
#   gnuplot -e "dir='bench/results'; p50=1.2; p99=4.5; e99=0.01; mode='full'" bench/plots.gp
#
# (p50, p99: scenario 4 lag in ms; e99: scenario 5 delay in s)
# Inputs (CSV with a header line):
#   DIR/lag.csv     scenario 4: resource_id,lag_ms,made_offer
#   DIR/expiry.csv  scenario 5: offer_id,at_delay_s,commit_delay_s
#   DIR/depth.csv   series,t_s,waiting
# Outputs: DIR/lag.png, DIR/depth.png

if (!exists("dir")) dir = 'bench/results'
if (!exists("p50")) p50 = 0
if (!exists("p99")) p99 = 0
if (!exists("mode")) mode = 'full'
if (!exists("e99")) e99 = 0

set datafile separator ','
set key autotitle columnhead
set grid

# pngcairo where gnuplot has it, else the libgd png terminal
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
    set terminal pngcairo size 1200,900 font ',10'
} else {
    set terminal png size 1200,900
}
set termoption noenhanced

## promotion lag (scenario 4) and expiry delay (scenario 5)
set output dir.'/lag.png'
set multiplot layout 2,2 title sprintf('waitlist promotion lag with the worker (scenario 4, %s run): release commit -> offer commit', mode)

xmax = (p99 > 0) ? p99 * 2.0 : 50
if (xmax < 10) xmax = 10
bw = xmax / 100.0
bin(x) = bw * floor(x / bw) + bw / 2.0

set title 'histogram (0 .. 2 x p99)'
set xlabel 'lag (ms)'
set ylabel 'releases'
set xrange [0:xmax]
set logscale y
set style fill solid 0.6 noborder
set arrow 1 from p50, graph 0 to p50, graph 1 nohead lc rgb 'dark-green' dt 2
set arrow 2 from p99, graph 0 to p99, graph 1 nohead lc rgb 'red' dt 2
set label 1 sprintf('p50 %.2f ms', p50) at p50, graph 0.95 offset 0.5,0 tc rgb 'dark-green'
set label 2 sprintf('p99 %.2f ms', p99) at p99, graph 0.85 offset 0.5,0 tc rgb 'red'
plot dir.'/lag.csv' using (bin($2)):(1.0) smooth freq with boxes lc rgb 'steelblue' notitle
unset logscale y
unset arrow 1
unset arrow 2
unset label 1
unset label 2

set title 'cumulative distribution'
set xlabel 'lag (ms)'
set ylabel 'fraction of releases'
set autoscale x
set logscale x
set yrange [0:1]
plot dir.'/lag.csv' using 2:(1.0) smooth cnormal with lines lw 2 lc rgb 'steelblue' notitle
unset logscale x
set autoscale y

stats dir.'/expiry.csv' using ($2 * 1000.0) nooutput
emin = STATS_min
emax = (e99 > 0) ? e99 * 1000.0 * 2.0 : STATS_max
if (emax <= emin) emax = emin + 1
ew = (emax - emin) / 80.0
ebin(x) = ew * floor(x / ew) + ew / 2.0
set title 'expiry delay with the worker (scenario 5): transition.at - expires_at'
set xlabel 'delay (ms)'
set ylabel 'offers'
set xrange [emin:emax]
set logscale y
plot dir.'/expiry.csv' using (ebin($2 * 1000.0)):(1.0) smooth freq with boxes lc rgb 'dark-orange' notitle
unset logscale y
set autoscale x

set title 'expiry delay, cumulative'
set xlabel 'delay (ms)'
set ylabel 'fraction of offers'
set yrange [0:1]
plot dir.'/expiry.csv' using ($2 * 1000.0):(1.0) smooth cnormal with lines lw 2 lc rgb 'dark-orange' title 'to transition.at', \
     dir.'/expiry.csv' using ($3 * 1000.0):(1.0) smooth cnormal with lines lw 2 lc rgb 'black' dt 2 title 'to commit'
set autoscale y
unset multiplot

## waitlist depth over time
set output dir.'/depth.png'
set multiplot layout 3,1 title sprintf('waitlist depth (WAITING entries) over time, from the audit trail (%s run)', mode)
set xlabel 'seconds since the scenario started'
set ylabel 'waiting'
set key top right
set autoscale x

# each panel spans its own series (the file holds them all)
stats dir.'/depth.csv' using ((strcol(1) eq 's8-inline' || strcol(1) eq 's8-worker') ? $2 : 1/0) nooutput
set xrange [0:STATS_max]
set title 'scenario 8: 8 clients releasing on one hot resource'
plot dir.'/depth.csv' using 2:(strcol(1) eq 's8-inline' ? $3 : 1/0) with lines lw 2 lc rgb 'red' title 'inline', \
     dir.'/depth.csv' using 2:(strcol(1) eq 's8-worker' ? $3 : 1/0) with lines lw 2 lc rgb 'steelblue' title 'worker'

stats dir.'/depth.csv' using (strcol(1) eq 's4' ? $2 : 1/0) nooutput
set xrange [0:STATS_max]
set title 'scenario 4: 200 releases/s over 1,000 resources, worker (sum over the resources)'
plot dir.'/depth.csv' using 2:(strcol(1) eq 's4' ? $3 : 1/0) with lines lw 2 lc rgb 'steelblue' notitle

stats dir.'/depth.csv' using (strcol(1) eq 's1' ? $2 : 1/0) nooutput
set xrange [0:STATS_max]
set title 'scenario 1: 8 clients joining one hot resource (second run)'
plot dir.'/depth.csv' using 2:(strcol(1) eq 's1' ? $3 : 1/0) with lines lw 2 lc rgb 'dark-green' notitle
unset multiplot
