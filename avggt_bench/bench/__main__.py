from avggt_bench.bench import main

raise SystemExit(main())
